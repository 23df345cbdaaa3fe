// wp-lite observability page. No framework, no network but this server.
"use strict";

const state = { csrf: null, samples: [], timer: null };
const $ = (id) => document.getElementById(id);

function cookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : null;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf || cookie("XSRF-TOKEN") || "";
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    cache: method === "GET" ? "no-cache" : "default",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { showLogin(); throw new Error("unauthorized"); }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
  return data;
}

// Polled reads are conditional: the server tags each JSON answer (ETag), and with
// `cache: "no-cache"` the browser revalidates its copy on every poll (If-None-Match), so an
// unchanged list is a bodiless 304 that the browser answers from its cache.
function poll(path) { return api("GET", path); }

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function ago(ts) {
  if (!ts) return "–";
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
function num(n) { return (n ?? 0).toLocaleString(); }
function flash(msg) {
  const f = $("flash"); f.textContent = msg; f.hidden = false;
  clearTimeout(flash.t); flash.t = setTimeout(() => (f.hidden = true), 3000);
}

function showLogin() {
  clearInterval(state.timer); state.timer = null;
  $("dash").hidden = true; $("logout").hidden = true; $("login-view").hidden = false;
}
function showDash() {
  $("login-view").hidden = true; $("dash").hidden = false; $("logout").hidden = false;
  refresh();
  if (!state.timer) state.timer = setInterval(refresh, 2000);
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    const res = await fetch("/v1/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ token: $("token").value.trim() }),
    });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error ? data.error.message : "login failed");
    state.csrf = data.csrf_token; $("token").value = "";
    showDash();
  } catch (err) { $("login-error").textContent = err.message; }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/v1/auth/logout"); } catch (_) { /* already out */ }
  state.csrf = null; showLogin();
});

function renderStats(w) {
  const j = w.jobs;
  $("stat-started").textContent = num(j.started);
  $("stat-completed").textContent = num(j.completed);
  $("stat-failed").textContent = num(j.failed);
  $("stat-canceled").textContent = num(j.canceled);
  $("stat-avg").textContent = `${(w.job_avg_ms ?? 0).toFixed(1)} ms`;
  const alive = w.processes.filter((p) => p.alive).length;
  $("stat-alive").textContent = `${alive} / ${w.processes.filter((p) => p.state !== "stopped").length}`;
}

function renderWorkers(procs) {
  const rows = procs.map((p) => {
    const status = p.alive ? "alive" : (p.state === "stopped" ? "stopped" : "silent");
    return `<tr data-worker="${esc(p.name)}" data-status="${status}">
      <td><b>${esc(p.name)}</b></td><td><span class="badge ${status}">${status}</span></td>
      <td class="opt">${esc(p.host)} · ${p.pid}</td><td>${ago(p.last_tick_at)}</td><td class="opt">${p.last_tick_ms ?? "–"}</td>
      <td class="opt">${ago(p.last_heartbeat_at)}</td></tr>`;
  });
  $("workers-table").tBodies[0].innerHTML = rows.join("");
  $("workers-empty").hidden = procs.length > 0;
}

function renderQueues(queues) {
  $("queues-table").tBodies[0].innerHTML = queues.map((q) => `<tr>
    <td><b>${esc(q.type)}</b></td><td>${num(q.counts.queued)}</td><td>${num(q.counts.leased)}</td>
    <td>${num(q.counts.succeeded)}</td><td>${num(q.counts.failed)}</td><td class="opt">${num(q.counts.canceled)}</td>
    <td class="opt">${q.oldest_queued_age_seconds == null ? "–" : q.oldest_queued_age_seconds.toFixed(1) + " s"}</td>
    <td class="opt">${num(q.leases_expired_total)}</td></tr>`).join("");
  $("queues-empty").hidden = queues.length > 0;
  const sum = (k) => queues.reduce((a, q) => a + q.counts[k], 0);
  state.samples.push({ queued: sum("queued"), leased: sum("leased"), failed: sum("failed") });
  if (state.samples.length > 90) state.samples.shift();
  drawChart();
}

function drawChart() {
  const c = $("chart"); const ctx = c.getContext("2d");
  const w = (c.width = c.clientWidth * devicePixelRatio), h = (c.height = 140 * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  const s = state.samples; if (s.length < 2) return;
  const max = Math.max(1, ...s.map((x) => Math.max(x.queued, x.leased, x.failed)));
  ctx.strokeStyle = "#e3e6ec"; ctx.lineWidth = 1;
  const top = 18 * devicePixelRatio;
  for (let i = 0; i < 4; i++) { const y = top + ((h - top - 4 * devicePixelRatio) * i) / 4; ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke(); }
  const line = (key, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio; ctx.beginPath();
    s.forEach((p, i) => {
      const x = (i / (s.length - 1)) * w, y = h - (p[key] / max) * (h - 22 * devicePixelRatio) - 4 * devicePixelRatio;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  };
  line("queued", "#f59f00"); line("leased", "#3b5bdb"); line("failed", "#e03131");
  ctx.fillStyle = "#6b7385"; ctx.font = `${11 * devicePixelRatio}px system-ui`; ctx.fillText(String(max), 4, 12 * devicePixelRatio);
}

async function renderJobs() {
  const status = $("job-status").value;
  const data = await poll(`/v1/worker/jobs?status=${status}&limit=20`);
  $("jobs-table").tBodies[0].innerHTML = data.items.map((j) => {
    const actions = [];
    if (j.status === "failed" || j.status === "canceled") actions.push(`<button class="small" data-retry="${j.job_id}">Retry</button>`);
    if (j.status === "queued" || j.status === "leased") actions.push(`<button class="small danger" data-cancel-job="${j.job_id}">Cancel</button>`);
    return `<tr data-job="${j.job_id}"><td class="opt"><code title="${j.job_id}">${j.job_id.slice(0, 8)}…</code></td><td>${esc(j.type)}</td>
      <td>${j.attempts}/${j.max_attempts}</td><td class="err">${esc(j.last_error || "")}</td><td class="opt">${ago(j.updated_at)}</td>
      <td>${actions.join(" ")}</td></tr>`;
  }).join("");
  $("jobs-empty").hidden = data.items.length > 0;
}

function audienceText(a) {
  if (a.type === "all_users") return "all users";
  if (a.type === "explicit_users") return `${a.user_ids.length} listed users`;
  return "segment " + esc(JSON.stringify(a.filters));
}

async function renderBroadcasts() {
  const data = await poll("/v1/admin/notifications/broadcasts?limit=20");
  $("bc-counts").textContent = Object.entries(data.status_counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(" · ");
  $("broadcasts-table").tBodies[0].innerHTML = data.items.map((b) => {
    const done = b.sent + b.failed + b.skipped;
    const pct = b.total ? Math.round((done / b.total) * 100) : (b.status === "sent" ? 100 : 0);
    const actions = [];
    if (b.status === "draft" || b.status === "scheduled") actions.push(`<button class="small" data-send="${b.id}">Send now</button>`);
    if (["draft", "scheduled", "sending"].includes(b.status)) actions.push(`<button class="small secondary" data-cancel-bc="${b.id}">Cancel</button>`);
    return `<tr data-broadcast="${b.id}" data-status="${b.status}"><td class="title"><b>${esc(b.title)}</b></td>
      <td><span class="badge ${b.status}">${b.status}</span></td>
      <td><span class="progress ${b.status === "sent" ? "done" : ""}" role="progressbar" aria-valuenow="${pct}" aria-valuemin="0" aria-valuemax="100"><span data-pct="${pct}"></span></span>
        <span class="pct">${num(b.sent)} / ${num(b.total)}${b.skipped ? ` · ${num(b.skipped)} skipped` : ""}${b.failed ? ` · ${num(b.failed)} failed` : ""}</span></td>
      <td class="opt">${audienceText(b.audience)}</td><td class="opt">${ago(b.created_at)}</td><td class="actions-cell">${actions.join(" ")}</td></tr>`;
  }).join("");
  // Widths through the CSSOM: the page's CSP blocks inline style attributes.
  for (const bar of $("broadcasts-table").querySelectorAll(".progress > span[data-pct]")) bar.style.width = `${bar.dataset.pct}%`;
  $("broadcasts-empty").hidden = data.items.length > 0;
}

async function refresh() {
  // A page in a background tab does not poll; it catches up when it is shown again.
  if (document.hidden) return;
  try {
    const s = await poll("/v1/admin/telemetry/summary");
    renderStats(s.workers); renderWorkers(s.workers.processes); renderQueues(s.queues);
    await Promise.all([renderJobs(), renderBroadcasts()]);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    if (err.message !== "unauthorized") $("updated").textContent = "update failed: " + err.message;
  }
}

document.addEventListener("click", async (e) => {
  const t = e.target.closest("button"); if (!t) return;
  const act = async (fn, msg) => { t.disabled = true; try { await fn(); flash(msg); await refresh(); } catch (err) { flash(err.message); } finally { t.disabled = false; } };
  if (t.dataset.retry) act(() => api("POST", `/v1/worker/jobs/${t.dataset.retry}/retry`), "Job queued again");
  if (t.dataset.cancelJob) act(() => api("POST", `/v1/worker/jobs/${t.dataset.cancelJob}/cancel`), "Job canceled");
  if (t.dataset.send) act(() => api("POST", `/v1/admin/notifications/broadcasts/${t.dataset.send}/actions/send-now`), "Sending now");
  if (t.dataset.cancelBc) act(() => api("POST", `/v1/admin/notifications/broadcasts/${t.dataset.cancelBc}/actions/cancel`), "Broadcast cancelled");
});

$("job-status").addEventListener("change", () => renderJobs().catch(() => {}));
window.addEventListener("resize", drawChart);
document.addEventListener("visibilitychange", () => { if (!document.hidden && state.timer) refresh(); });

$("bc-audience").addEventListener("change", () => {
  const v = $("bc-audience").value;
  $("bc-ids-wrap").hidden = v !== "explicit_users"; $("bc-filters-wrap").hidden = v !== "segment";
});

$("broadcast-form").addEventListener("submit", async (e) => {
  e.preventDefault(); $("bc-error").textContent = "";
  try {
    const type = $("bc-audience").value;
    const audience = { type };
    if (type === "explicit_users") audience.user_ids = $("bc-ids").value.split(/[\s,]+/).filter(Boolean);
    if (type === "segment") audience.filters = JSON.parse($("bc-filters").value || "{}");
    const body = { title: $("bc-title").value, body: $("bc-body").value, audience };
    if ($("bc-when").value) body.scheduled_at = new Date($("bc-when").value).toISOString();
    await api("POST", "/v1/admin/notifications/broadcasts", body);
    $("broadcast-form").reset(); $("bc-audience").dispatchEvent(new Event("change"));
    flash("Broadcast created"); await refresh();
  } catch (err) { $("bc-error").textContent = err.message; }
});

// A session survives a reload: the CSRF token is also in the readable XSRF-TOKEN cookie.
(async () => {
  state.csrf = cookie("XSRF-TOKEN");
  try { await api("GET", "/v1/admin/telemetry/summary"); showDash(); } catch (_) { showLogin(); }
})();
