// The observability page in headless Chromium (Debian's, driven by playwright-core)
// against the real binary: log in, see a live worker, create a broadcast, send it now,
// watch it reach `sent` and open its detail, retry a failed job and open its timeline,
// bulk-retry failed jobs through the filter, pause/resume a queue and set its limit,
// create, trigger, edit, disable and delete schedules through the form (and see the
// server's error for a bad cron expression). Screenshots go to artifacts/ui.png and
// artifacts/ui-phone.png (390 px wide).
//
//   cargo build && cd tests/ui && npm ci && node --test
//
// WP_LITE_BIN picks the binary (default target/debug/wp-lite); CHROMIUM_PATH the browser
// (default /usr/bin/chromium).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

import { BIN, CHROMIUM, ARTIFACTS, env, serve } from "./server.mjs";

function wp(dbUrl, args) {
  return execFileSync(BIN, ["--database-url", dbUrl, ...args], { env: env(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Bounded poll: resolves with fn()'s first truthy value, fails after `ms`. */
async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("the observability page: log in, live worker, broadcasts, jobs, queues, schedules", { timeout: 180_000 }, async (t) => {
  assert.ok(fs.existsSync(BIN), `${BIN} does not exist: run \`cargo build\` first (or set WP_LITE_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} does not exist: apt-get install chromium (or set CHROMIUM_PATH)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wp-lite-ui-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dbUrl = `sqlite://${path.join(dir, "wp.db")}`;

  // Users first, through the CLI; then the token the server will use.
  const csv = path.join(dir, "users.csv");
  fs.writeFileSync(csv, "id,email,plan\nada,ada@example.com,pro\ngrace,grace@example.com,free\nlinus,,pro\n");
  assert.match(wp(dbUrl, ["users", "import", csv]), /imported 3 users/);
  const token = wp(dbUrl, ["admin-token"]).trim();
  assert.ok(token.length >= 32, "admin token");

  // A 1 s heartbeat so that the workers table shows last ticks by screenshot time.
  const server = await serve(dbUrl, { NOTIFICATIONS_BROADCAST_INTERVAL: "0.5", WP_LITE_WORKER_HEARTBEAT: "1s" });
  let exited = null;
  server.child.on("exit", (code, sig) => (exited = { code, sig }));
  t.after(async () => {
    if (exited) return;
    server.child.kill("SIGTERM");
    await until("serve to stop", () => exited, 30_000).catch(() => server.child.kill("SIGKILL"));
  });
  const { base } = server;

  const call = async (method, p, body) => {
    const res = await fetch(base + p, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };

  // One failed job: enqueued, leased and failed for good over HTTP.
  let r = await call("POST", "/v1/worker/jobs", { type: "ui.report", input: { page: 1 } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const jobId = r.body.job_id;
  r = await call("POST", "/v1/worker/jobs/lease", { worker_id: "ui-test", job_types: ["ui.report"], lease_seconds: 300 });
  assert.equal(r.body.jobs.length, 1, JSON.stringify(r.body));
  r = await call("POST", `/v1/worker/jobs/${jobId}/fail`, {
    worker_id: "ui-test", lease_token: r.body.jobs[0].lease_token, error: "renderer crashed", retryable: false,
  });
  assert.equal(r.body.status, "failed", JSON.stringify(r.body));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core gives every launch a fresh temporary profile (--user-data-dir).
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Before logging in the page asks whether a session exists: that one 401 is expected,
  // and so is the 400 of the schedule with a bad cron expression while it is being shown.
  // Every other error response is a problem (the console repeats them as "Failed to load
  // resource", so those lines are left to this handler).
  let loggedIn = false;
  let badSchedule = false;
  page.on("response", (res) => {
    const rejectedSchedule = badSchedule && res.status() === 400 && res.request().method() === "PUT"
      && new URL(res.url()).pathname.startsWith("/v1/worker/schedules/");
    const expected = (!loggedIn && res.status() === 401) || rejectedSchedule;
    if (res.status() >= 400 && !expected) problems.push(`${res.status()} ${res.request().method()} ${res.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
  });
  page.on("requestfailed", (q) => problems.push(`request failed: ${q.url()} ${q.failure() && q.failure().errorText}`));
  page.on("request", (q) => { if (!q.url().startsWith(base)) problems.push(`left the server: ${q.url()}`); });
  // confirm() before bulk actions and deletes: accepted, and what it asked is kept.
  const confirms = [];
  page.on("dialog", async (d) => { confirms.push(d.message()); await d.accept(); });

  // Log in through the form.
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, "/ui/", "/ redirects to the page");
  await page.locator("#login-view").waitFor({ state: "visible" }); // after the session probe
  await page.locator("#token").fill(token);
  loggedIn = true;
  await page.locator("#login-button").click();

  // A live worker (serve runs its workers in-process).
  const alive = page.locator('#workers-table tbody tr[data-status="alive"]');
  await alive.first().waitFor({ timeout: 30_000 });
  const workerNames = await page.locator("#workers-table tbody tr[data-status=alive]").evaluateAll((rows) => rows.map((r) => r.dataset.worker));
  assert.ok(workerNames.includes("notifications.broadcast"), `alive workers: ${workerNames}`);
  assert.match(await alive.first().locator(".badge").innerText(), /alive/);

  // Create a broadcast through the form (only the audience's own fields show).
  assert.equal(await page.locator("#bc-ids-wrap").isVisible(), false, "user ids field shown for all_users");
  assert.equal(await page.locator("#bc-filters-wrap").isVisible(), false, "segment field shown for all_users");
  await page.locator("#bc-audience").selectOption("explicit_users");
  assert.equal(await page.locator("#bc-ids-wrap").isVisible(), true, "user ids field hidden for explicit_users");
  const title = `Release notes ${Date.now()}`;
  await page.locator("#bc-title").fill(title);
  await page.locator("#bc-body").fill("Version 2 is out: faster queues and a new dashboard.");
  await page.locator("#bc-audience").selectOption("all_users");
  await page.locator("#bc-create").click();
  const row = page.locator("#broadcasts-table tbody tr[data-broadcast]", { hasText: title });
  await row.waitFor({ timeout: 15_000 });
  assert.equal(await row.getAttribute("data-status"), "draft");
  const bcId = await row.getAttribute("data-broadcast");

  // Send now and watch it reach `sent` with the bar at 100 %.
  await page.locator(`button[data-send="${bcId}"]`).click();
  const sent = page.locator(`#broadcasts-table tr[data-broadcast="${bcId}"][data-status="sent"]`);
  await sent.waitFor({ timeout: 30_000 });
  assert.equal(await sent.locator(".badge").innerText(), "sent");
  const width = await sent.locator(".progress > span").evaluate((el) => el.style.width);
  assert.equal(width, "100%");
  assert.match(await sent.locator(".pct").innerText(), /3 \/ 3/);
  r = await call("GET", `/v1/admin/notifications/broadcasts/${bcId}`);
  assert.deepEqual([r.body.status, r.body.total, r.body.sent], ["sent", 3, 3], JSON.stringify(r.body));

  // The failed job: switch the list to failed, click Retry, and it is queued again.
  await page.locator("#job-status").selectOption("failed");
  const retry = page.locator(`#jobs-table tr[data-job="${jobId}"] button[data-retry="${jobId}"]`);
  await retry.waitFor({ timeout: 15_000 });
  assert.match(await page.locator(`#jobs-table tr[data-job="${jobId}"]`).innerText(), /renderer crashed/);
  await retry.click();
  await page.locator("#flash", { hasText: "Job queued again" }).waitFor({ timeout: 15_000 });
  const job = await until("the job to be queued again", async () => {
    const j = await call("GET", `/v1/worker/jobs/${jobId}`);
    return j.body.status === "queued" ? j.body : null;
  });
  assert.equal(job.status, "queued");
  await page.locator("#job-status").selectOption("queued");
  await page.locator(`#jobs-table tr[data-job="${jobId}"]`).waitFor({ timeout: 15_000 });

  // The stats and the queue table show what happened.
  await until("the stats to show the failed attempt", async () => Number(await page.locator("#stat-failed").innerText()) >= 1);
  assert.match(await page.locator("#queues-table tbody").innerText(), /ui\.report/);

  // The broadcast's detail: its whole record, counters included.
  await page.locator(`#broadcasts-table button[data-bc-open="${bcId}"]`).click();
  const bcDetail = page.locator(`#bc-detail[data-broadcast="${bcId}"]`);
  await bcDetail.locator('[data-fact="sent"]', { hasText: "3" }).waitFor({ timeout: 15_000 });
  assert.equal(await page.locator("#bcd-title").innerText(), title);
  assert.match(await page.locator("#bcd-body").innerText(), /Version 2 is out/);
  assert.match(await bcDetail.locator('[data-fact="status"]').innerText(), /sent/);
  assert.match(await page.locator("#bcd-pct").innerText(), /100 %/);
  await page.locator("#bcd-close").click();
  await page.locator("#bc-detail").waitFor({ state: "hidden" });

  // The retried job's detail: its fields and its event timeline.
  await page.locator(`#jobs-table tr[data-job="${jobId}"] button[data-job-open="${jobId}"]`).click();
  const jobDetail = page.locator(`#job-detail[data-job="${jobId}"]`);
  await jobDetail.locator('#jd-events li[data-event="failed"]').waitFor({ timeout: 15_000 });
  const events = await jobDetail.locator("#jd-events li").evaluateAll((lis) => lis.map((li) => li.dataset.event));
  for (const e of ["queued", "leased", "failed"]) assert.ok(events.includes(e), `timeline: ${events}`);
  assert.match(await jobDetail.locator("#jd-events").innerText(), /leased/);
  assert.equal(await jobDetail.locator('[data-fact="type"]').innerText(), "ui.report");
  assert.match(await jobDetail.locator('[data-fact="attempts"]').innerText(), /^\d+\/3$/);
  assert.match(await jobDetail.locator('[data-fact="status"]').innerText(), /queued/);
  assert.match(await jobDetail.locator("#jd-input").innerText(), /"page": 1/);
  await page.locator("#jd-close").click();
  await page.locator("#job-detail").waitFor({ state: "hidden" });

  // Bulk retry: a job failed for good (one attempt allowed) over REST, then the page's
  // filter (status failed, its type) and "Retry all".
  r = await call("POST", "/v1/worker/jobs", { type: "ui.bulk", input: { n: 1 }, max_attempts: 1 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const bulkId = r.body.job_id;
  r = await call("POST", "/v1/worker/jobs/lease", { worker_id: "ui-test", job_types: ["ui.bulk"], lease_seconds: 300 });
  assert.equal(r.body.jobs.length, 1, JSON.stringify(r.body));
  r = await call("POST", `/v1/worker/jobs/${bulkId}/fail`, {
    worker_id: "ui-test", lease_token: r.body.jobs[0].lease_token, error: "out of paper", retryable: true,
  });
  assert.equal(r.body.status, "failed", JSON.stringify(r.body));
  await page.locator("#job-status").selectOption("failed");
  await page.locator("#job-type").fill("ui.bulk");
  await page.locator("#job-apply").click();
  await page.locator(`#jobs-table tr[data-job="${bulkId}"][data-status="failed"]`).waitFor({ timeout: 15_000 });
  assert.equal(await page.locator("#jobs-table tbody tr").count(), 1, "the filter shows only ui.bulk's failed job");
  await page.locator("#bulk-retry").click();
  await page.locator("#bulk-result", { hasText: "1 job queued again" }).waitFor({ timeout: 15_000 });
  assert.match(confirms.at(-1), /status failed and type ui\.bulk/);
  await until("the bulk-retried job to be queued", async () => (await call("GET", `/v1/worker/jobs/${bulkId}`)).body.status === "queued");
  await page.locator("#jobs-empty").waitFor({ state: "visible", timeout: 15_000 }); // nothing failed of that type now
  await page.locator("#job-type").fill("");
  await page.locator("#job-status").selectOption(""); // any status, for the screenshots

  // Pause and resume a queue; the server says so too.
  const queueRest = async (type) => (await call("GET", "/v1/worker/queues")).body.items.find((q) => q.type === type);
  const qrow = page.locator('#queues-table tr[data-queue="ui.report"]');
  await qrow.locator('button[data-action="pause"]').click();
  await page.locator('#queues-table tr[data-queue="ui.report"][data-paused="true"]').waitFor({ timeout: 15_000 });
  assert.match(await qrow.innerText(), /paused/);
  assert.equal((await queueRest("ui.report")).paused, true);
  await qrow.locator('button[data-action="resume"]').click();
  await page.locator('#queues-table tr[data-queue="ui.report"][data-paused="false"]').waitFor({ timeout: 15_000 });
  assert.equal((await queueRest("ui.report")).paused, false);

  // A concurrency limit, then none again (an empty input).
  await qrow.locator('input[data-limit-for="ui.report"]').fill("2");
  await qrow.locator('button[data-limit-save="ui.report"]').click();
  await page.locator('#queues-table tr[data-queue="ui.report"][data-max-leased="2"]').waitFor({ timeout: 15_000 });
  assert.equal((await queueRest("ui.report")).max_leased, 2);
  await qrow.locator('input[data-limit-for="ui.report"]').fill("");
  await qrow.locator('button[data-limit-save="ui.report"]').click();
  await page.locator('#queues-table tr[data-queue="ui.report"][data-max-leased=""]').waitFor({ timeout: 15_000 });
  assert.equal((await queueRest("ui.report")).max_leased, null);

  // A schedule through the form.
  const scheduleRest = async (name) => (await call("GET", "/v1/worker/schedules?limit=100")).body.items.find((s) => s.name === name);
  await page.locator("#sch-name").fill("nightly");
  await page.locator("#sch-cron").fill("0 3 * * *");
  await page.locator("#sch-tz").fill("Europe/Berlin");
  await page.locator("#sch-type").fill("report.build");
  await page.locator("#sch-input").fill('{"format": "pdf"}');
  await page.locator("#sch-save").click();
  const nightly = page.locator('#schedules-table tr[data-schedule="nightly"]');
  await nightly.waitFor({ timeout: 15_000 });
  assert.match(await nightly.innerText(), /0 3 \* \* \*/);
  assert.match(await nightly.innerText(), /report\.build/);
  let sch = await scheduleRest("nightly");
  assert.deepEqual([sch.cron, sch.timezone, sch.job.type, sch.job.input, sch.enabled, sch.overlap],
    ["0 3 * * *", "Europe/Berlin", "report.build", { format: "pdf" }, true, "skip"], JSON.stringify(sch));
  assert.ok(sch.next_run_at, "an enabled schedule has a next run");
  assert.equal(await page.locator("#sch-name").inputValue(), "", "the form is empty again after saving");

  // Trigger it: a report.build job exists, and its id opens its detail.
  await nightly.locator('button[data-sch-trigger="nightly"]').click();
  const triggered = page.locator("#sch-triggered button[data-job-open]");
  await triggered.waitFor({ timeout: 15_000 });
  const triggeredId = await triggered.getAttribute("data-job-open");
  r = await call("GET", `/v1/worker/jobs/${triggeredId}`);
  assert.equal(r.body.type, "report.build", JSON.stringify(r.body));
  r = await call("GET", "/v1/worker/jobs?type=report.build");
  assert.ok(r.body.items.some((j) => j.job_id === triggeredId), JSON.stringify(r.body));
  await triggered.click();
  await page.locator(`#job-detail[data-job="${triggeredId}"] #jd-events li[data-event="queued"]`).waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('#job-detail [data-fact="type"]').innerText(), "report.build");
  await page.locator("#jd-close").click();
  await page.locator("#job-detail").waitFor({ state: "hidden" });

  // Disable it (the row button re-puts the schedule), then edit its cron in the form.
  await nightly.locator('button[data-sch-toggle="nightly"]').click();
  await page.locator('#schedules-table tr[data-schedule="nightly"][data-enabled="false"]').waitFor({ timeout: 15_000 });
  sch = await scheduleRest("nightly");
  assert.equal(sch.enabled, false);
  assert.deepEqual([sch.cron, sch.timezone, sch.job.type], ["0 3 * * *", "Europe/Berlin", "report.build"]);
  await nightly.locator('button[data-sch-edit="nightly"]').click();
  assert.equal(await page.locator("#sch-name").inputValue(), "nightly");
  assert.equal(await page.locator("#sch-enabled").isChecked(), false);
  await page.locator("#sch-cron").fill("30 4 * * *");
  await page.locator("#sch-enabled").check();
  await page.locator("#sch-save").click();
  await page.locator('#schedules-table tr[data-schedule="nightly"][data-enabled="true"]', { hasText: "30 4 * * *" }).waitFor({ timeout: 15_000 });
  sch = await scheduleRest("nightly");
  assert.deepEqual([sch.cron, sch.timezone, sch.job.type, sch.job.input, sch.enabled],
    ["30 4 * * *", "Europe/Berlin", "report.build", { format: "pdf" }, true], JSON.stringify(sch));

  // A bad cron expression: the server's message shows beside the cron field, nothing saved.
  badSchedule = true;
  await page.locator("#sch-name").fill("broken");
  await page.locator("#sch-cron").fill("61 * * * *");
  await page.locator("#sch-type").fill("report.build");
  await page.locator("#sch-save").click();
  const cronError = page.locator('#schedule-form [data-field-error~="cron"]');
  await until("the cron error to show", async () => (await cronError.innerText()).trim().length > 0, 15_000);
  badSchedule = false;
  assert.notEqual((await page.locator("#sch-error").innerText()).trim(), "", "the error's message shows");
  assert.equal(await page.locator("#sch-cron").getAttribute("aria-invalid"), "true");
  assert.equal(await scheduleRest("broken"), undefined, "a bad schedule is not saved");
  await page.locator("#sch-new").click();
  assert.equal(await cronError.innerText(), "");

  // Another schedule (UTC by default), deleted again after a confirm().
  await page.locator("#sch-name").fill("hourly");
  await page.locator("#sch-cron").fill("0 * * * *");
  await page.locator("#sch-type").fill("report.build");
  await page.locator("#sch-save").click();
  const hourly = page.locator('#schedules-table tr[data-schedule="hourly"]');
  await hourly.waitFor({ timeout: 15_000 });
  assert.equal((await scheduleRest("hourly")).timezone, "UTC");
  await hourly.locator('button[data-sch-delete="hourly"]').click();
  await hourly.waitFor({ state: "detached", timeout: 15_000 });
  assert.match(confirms.at(-1), /hourly/);
  assert.equal(await scheduleRest("hourly"), undefined);

  // Screenshots: a laptop, then a phone. At phone width nothing makes the page wider
  // than the screen (wide tables scroll inside their card).
  await page.waitForTimeout(2_500); // let the chart collect a few samples for the picture
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header belongs at the top
  await page.screenshot({ path: path.join(ARTIFACTS, "ui.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(ARTIFACTS, "ui-phone.png"), fullPage: true });
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a 390 px phone`);
  for (const id of ["#bc-create", "#job-status", "#job-type", "#bulk-retry", "#sch-save", "#logout"]) {
    const box = await page.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${id} is off screen at 390 px: ${JSON.stringify(box)}`);
  }

  assert.deepEqual(problems, [], "the page had errors or left the server");

  // The page polls conditionally: unchanged answers came back as bodiless 304s (the server
  // counts them by route and status).
  const metrics = await fetch(`${base}/v1/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await metrics.text();
  assert.match(text, /wp_lite_http_requests_total\{[^}]*status="304"[^}]*\} [1-9]/, "no poll was answered 304");

  // The server stops cleanly.
  server.child.kill("SIGTERM");
  const end = await until("serve to stop", () => exited, 30_000);
  assert.equal(end.code, 0, server.log.slice(-20).join("\n"));
});
