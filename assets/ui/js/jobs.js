// Jobs: one page of a filtered list (status, type, cursor), bulk retry/cancel of everything
// the filter matches, and a job's detail with its event timeline.
import { $, h, api, poll, query, seg, badge, jobLink, agoCell, when, json, flash, Pager, latest, refreshAll, patchRows, changed, forget } from "./api.js";

const PAGE = 25;
const pager = new Pager();
const PAGER_IDS = { first: "jobs-first", prev: "jobs-prev", next: "jobs-next", label: "jobs-page" };
const filter = { status: "failed", type: "" };
const listGate = latest();
const detailGate = latest();
let openId = null;

// ---------- the list ----------

function actionsFor(j) {
  const out = [];
  if (j.status === "failed" || j.status === "canceled") out.push(h("button", { type: "button", class: "small", dataset: { retry: j.job_id } }, "Retry"));
  if (j.status === "queued" || j.status === "leased") out.push(h("button", { type: "button", class: "small danger", dataset: { cancelJob: j.job_id } }, "Cancel"));
  return out;
}

function render(items) {
  patchRows($("jobs-table").tBodies[0], items, (j) => j.job_id, (j) => h("tr", { dataset: { job: j.job_id, status: j.status } },
    h("td", null, jobLink(j.job_id)),
    h("td", null, j.type),
    h("td", null, badge(j.status)),
    h("td", null, `${j.attempts}/${j.max_attempts}`),
    h("td", { class: "err" }, j.last_error || ""),
    agoCell("td", j.updated_at, { class: "opt" }),
    h("td", { class: "actions-cell" }, actionsFor(j))));
  $("jobs-empty").hidden = items.length > 0;
}

export async function refresh() {
  const path = "/v1/worker/jobs" + query({ status: filter.status, type: filter.type, limit: PAGE, cursor: pager.cursor });
  const r = await listGate(() => poll(path));
  if (!r) return;
  pager.next = r.v.next_cursor || null;
  pager.show(PAGER_IDS);
  render(r.v.items || []);
}

/** Takes the filter from the inputs; a changed filter starts again at the first page. */
function applyFilter() {
  const status = $("job-status").value, type = $("job-type").value.trim();
  if (status !== filter.status || type !== filter.type) {
    filter.status = status; filter.type = type; pager.first();
  }
}

function reload() {
  refresh().catch((err) => { if (err.message !== "unauthorized") flash(err.message); });
}

async function bulk(action, btn) {
  applyFilter(); reload();
  const body = {};
  if (filter.status) body.status = filter.status;
  if (filter.type) body.type = filter.type;
  const what = [filter.status && `status ${filter.status}`, filter.type && `type ${filter.type}`].filter(Boolean).join(" and ");
  if (!what) { $("bulk-result").textContent = "Choose a status or a type first."; return; }
  const verb = action === "retry" ? "Retry every failed or canceled job" : "Cancel every queued or leased job";
  if (!window.confirm(`${verb} with ${what}?`)) return;
  btn.disabled = true;
  try {
    const r = await api("POST", `/v1/worker/jobs/actions/${action}`, body);
    const n = r && typeof r.updated === "number" ? r.updated : 0;
    const msg = `${n} ${n === 1 ? "job" : "jobs"} ${action === "retry" ? "queued again" : "canceled"}`;
    $("bulk-result").textContent = msg; flash(msg);
    await refreshAll();
  } catch (err) {
    if (err.message !== "unauthorized") $("bulk-result").textContent = err.message;
  } finally { btn.disabled = false; }
}

// ---------- the detail ----------

function fact(key, label, value, cls) {
  return [h("dt", { class: cls && cls.includes("wide") ? "wide" : null }, label), h("dd", { dataset: { fact: key }, class: cls }, value)];
}

function renderDetail(j, events) {
  $("jd-title").replaceChildren("Job ", h("code", { class: "mono" }, j.job_id));
  $("jd-facts").replaceChildren(
    ...fact("status", "Status", badge(j.status)),
    ...fact("type", "Type", j.type),
    ...fact("attempts", "Attempts", `${j.attempts}/${j.max_attempts}`),
    ...fact("lease_owner", "Lease owner", j.lease_owner || "–"),
    ...fact("lease_until", "Lease until", when(j.lease_until)),
    ...fact("available_at", "Available at", when(j.available_at)),
    ...fact("priority", "Priority", j.priority ?? "–"),
    ...fact("created_at", "Created", when(j.created_at)),
    ...fact("updated_at", "Updated", when(j.updated_at)),
    ...(j.idempotency_key ? fact("idempotency_key", "Idempotency key", j.idempotency_key) : []),
    ...fact("last_error", "Last error", j.last_error || "–", j.last_error ? "wide err" : "wide"));
  $("jd-actions").replaceChildren(...actionsFor(j));
  $("jd-input").textContent = json(j.input);
  $("jd-result").textContent = json(j.result);
  $("jd-events").replaceChildren(...events.map((e) => h("li", { dataset: { event: e.event } },
    h("span", { class: "ev-time", title: e.ts }, when(e.ts)),
    h("b", { class: "ev-name" }, e.event),
    e.details == null ? null : h("pre", { class: "json ev-details" }, JSON.stringify(e.details, null, 2)))));
  $("jd-events-empty").hidden = events.length > 0;
}

async function loadDetail() {
  const id = openId;
  if (!id) return;
  try {
    const r = await detailGate(() => Promise.all([
      poll(`/v1/worker/jobs/${seg(id)}`), poll(`/v1/worker/jobs/${seg(id)}/events`),
    ]));
    if (!r || id !== openId) return;
    $("jd-error").textContent = "";
    // Redrawn only when something changed: its buttons stay put between polls.
    if (changed($("job-detail"), r.v)) renderDetail(r.v[0], (r.v[1] && r.v[1].items) || []);
  } catch (err) {
    if (err.message === "unauthorized") throw err;
    if (id === openId) $("jd-error").textContent = err.message;
  }
}

/** Opens the detail of a job (from any list on the page). */
export function openJob(id) {
  openId = String(id);
  const d = $("job-detail");
  $("jd-title").textContent = "Job " + openId;
  for (const k of ["jd-facts", "jd-actions", "jd-events"]) $(k).replaceChildren();
  $("jd-input").textContent = ""; $("jd-result").textContent = ""; $("jd-error").textContent = "";
  $("jd-events-empty").hidden = true;
  d.dataset.job = openId;
  forget(d);
  if (!d.open) d.showModal();
  loadDetail().catch(() => {});
}

/** Polled with the page while the detail is open. */
export function refreshDetail() { return openId ? loadDetail() : Promise.resolve(); }

// ---------- wiring ----------

export function init() {
  filter.status = $("job-status").value; filter.type = $("job-type").value.trim();
  $("job-status").addEventListener("change", () => { applyFilter(); reload(); });
  $("job-type").addEventListener("change", () => { applyFilter(); reload(); });
  $("job-filter").addEventListener("submit", (e) => { e.preventDefault(); applyFilter(); reload(); });
  $("jobs-next").addEventListener("click", () => { if (pager.forward()) reload(); });
  $("jobs-prev").addEventListener("click", () => { if (pager.back()) reload(); });
  $("jobs-first").addEventListener("click", () => { pager.first(); reload(); });
  $("bulk-retry").addEventListener("click", (e) => bulk("retry", e.currentTarget));
  $("bulk-cancel").addEventListener("click", (e) => bulk("cancel", e.currentTarget));
  pager.show(PAGER_IDS);

  const d = $("job-detail");
  $("jd-close").addEventListener("click", () => d.close());
  d.addEventListener("close", () => { openId = null; delete d.dataset.job; });
  // A click on the backdrop (outside the dialog's box) closes it too.
  d.addEventListener("click", (e) => {
    if (e.target !== d) return;
    const b = d.getBoundingClientRect();
    if (e.clientX < b.left || e.clientX > b.right || e.clientY < b.top || e.clientY > b.bottom) d.close();
  });

  document.addEventListener("click", (e) => {
    const t = e.target.closest("button"); if (!t) return;
    if (t.dataset.jobOpen) { openJob(t.dataset.jobOpen); return; }
    const act = async (fn, msg) => {
      t.disabled = true;
      try { await fn(); flash(msg); await refreshAll(); } catch (err) { if (err.message !== "unauthorized") flash(err.message); } finally { t.disabled = false; }
    };
    if (t.dataset.retry) act(() => api("POST", `/v1/worker/jobs/${seg(t.dataset.retry)}/retry`), "Job queued again");
    if (t.dataset.cancelJob) act(() => api("POST", `/v1/worker/jobs/${seg(t.dataset.cancelJob)}/cancel`), "Job canceled");
  });
}
