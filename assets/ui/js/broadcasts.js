// Broadcasts: the list with its status counts, send now / cancel, the create form, and a
// broadcast's full record in a detail panel.
import { $, h, api, poll, seg, badge, agoCell, when, num, json, flash, latest, refreshAll, patchRows, changed, forget } from "./api.js";

const gate = latest();
const detailGate = latest();
let openId = null;

function audienceText(a) {
  if (!a) return "–";
  if (a.type === "all_users") return "all users";
  if (a.type === "explicit_users") return `${a.user_count ?? (a.user_ids || []).length} listed users`;
  return "segment " + JSON.stringify(a.filters);
}

function percent(b) {
  const done = b.sent + b.failed + b.skipped;
  return b.total ? Math.round((done / b.total) * 100) : (b.status === "sent" ? 100 : 0);
}

function progress(b) {
  const pct = percent(b);
  const inner = h("span", { dataset: { pct } });
  // Widths through the CSSOM: the page's CSP blocks inline style attributes.
  inner.style.width = `${pct}%`;
  return h("span", { class: b.status === "sent" ? "progress done" : "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, inner);
}

function counters(b) {
  return `${num(b.sent)} / ${num(b.total)}${b.skipped ? ` · ${num(b.skipped)} skipped` : ""}${b.failed ? ` · ${num(b.failed)} failed` : ""}`;
}

function actionsFor(b) {
  const out = [];
  if (b.status === "draft" || b.status === "scheduled") out.push(h("button", { type: "button", class: "small", dataset: { send: b.id } }, "Send now"));
  if (["draft", "scheduled", "sending"].includes(b.status)) out.push(" ", h("button", { type: "button", class: "small secondary", dataset: { cancelBc: b.id } }, "Cancel"));
  return out;
}

export async function refresh() {
  const r = await gate(() => poll("/v1/admin/notifications/broadcasts?limit=20"));
  if (!r) return;
  const data = r.v;
  $("bc-counts").textContent = Object.entries(data.status_counts || {}).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(" · ");
  patchRows($("broadcasts-table").tBodies[0], data.items, (b) => b.id, (b) => h("tr", { dataset: { broadcast: b.id, status: b.status } },
    h("td", { class: "title" }, h("button", { type: "button", class: "link title-link", dataset: { bcOpen: b.id }, title: "Show the whole broadcast" }, b.title)),
    h("td", null, badge(b.status)),
    h("td", null, progress(b), h("span", { class: "pct" }, counters(b))),
    h("td", { class: "opt" }, audienceText(b.audience)),
    agoCell("td", b.created_at, { class: "opt" }),
    h("td", { class: "actions-cell" }, actionsFor(b))));
  $("broadcasts-empty").hidden = data.items.length > 0;
}

// ---------- the detail ----------

function renderDetail(b) {
  $("bcd-title").textContent = b.title;
  const pct = percent(b);
  const bar = $("bcd-bar");
  bar.className = b.status === "sent" ? "progress done" : "progress";
  bar.setAttribute("aria-valuenow", String(pct));
  bar.firstElementChild.style.width = `${pct}%`;
  $("bcd-pct").textContent = `${pct} % · ${counters(b)}`;
  const f = (key, label, value, cls) => [h("dt", { class: cls && cls.includes("wide") ? "wide" : null }, label), h("dd", { dataset: { fact: key }, class: cls }, value)];
  $("bcd-facts").replaceChildren(
    ...f("status", "Status", badge(b.status)),
    ...f("audience", "Audience", audienceText(b.audience)),
    ...f("total", "Recipients", num(b.total)),
    ...f("sent", "Sent", num(b.sent)),
    ...f("skipped", "Skipped", num(b.skipped)),
    ...f("failed", "Failed", num(b.failed)),
    ...f("created_by", "Created by", b.created_by || "–"),
    ...f("created_at", "Created", when(b.created_at)),
    ...f("updated_at", "Updated", when(b.updated_at)),
    ...f("scheduled_at", "Scheduled for", when(b.scheduled_at)),
    ...f("started_at", "Started", when(b.started_at)),
    ...f("finished_at", "Finished", when(b.finished_at)),
    ...f("id", "Id", h("code", { class: "mono" }, b.id), "wide"),
    ...f("last_error", "Last error", b.last_error || "–", b.last_error ? "wide err" : "wide"));
  $("bcd-body").textContent = b.body;
  $("bcd-audience").textContent = json(b.audience);
}

async function loadDetail() {
  const id = openId;
  if (!id) return;
  try {
    const r = await detailGate(() => poll(`/v1/admin/notifications/broadcasts/${seg(id)}`));
    if (!r || id !== openId) return;
    $("bcd-error").textContent = "";
    if (changed($("bc-detail"), r.v)) renderDetail(r.v);
  } catch (err) {
    if (err.message === "unauthorized") throw err;
    if (id === openId) $("bcd-error").textContent = err.message;
  }
}

export function openBroadcast(id) {
  openId = String(id);
  const d = $("bc-detail");
  d.dataset.broadcast = openId;
  forget(d);
  $("bcd-title").textContent = "Broadcast";
  $("bcd-facts").replaceChildren(); $("bcd-body").textContent = ""; $("bcd-audience").textContent = ""; $("bcd-pct").textContent = "";
  $("bcd-error").textContent = "";
  if (!d.open) d.showModal();
  loadDetail().catch(() => {});
}

export function refreshDetail() { return openId ? loadDetail() : Promise.resolve(); }

// ---------- wiring ----------

export function init() {
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
      flash("Broadcast created"); await refreshAll();
    } catch (err) { if (err.message !== "unauthorized") $("bc-error").textContent = err.message; }
  });

  $("broadcasts-table").addEventListener("click", (e) => {
    const t = e.target.closest("button"); if (!t) return;
    const act = async (fn, msg) => {
      t.disabled = true;
      try { await fn(); flash(msg); await refreshAll(); } catch (err) { if (err.message !== "unauthorized") flash(err.message); } finally { t.disabled = false; }
    };
    if (t.dataset.bcOpen) openBroadcast(t.dataset.bcOpen);
    if (t.dataset.send) act(() => api("POST", `/v1/admin/notifications/broadcasts/${seg(t.dataset.send)}/actions/send-now`), "Sending now");
    if (t.dataset.cancelBc) act(() => api("POST", `/v1/admin/notifications/broadcasts/${seg(t.dataset.cancelBc)}/actions/cancel`), "Broadcast cancelled");
  });

  const d = $("bc-detail");
  $("bcd-close").addEventListener("click", () => d.close());
  d.addEventListener("close", () => { openId = null; delete d.dataset.broadcast; });
  d.addEventListener("click", (e) => {
    if (e.target !== d) return;
    const b = d.getBoundingClientRect();
    if (e.clientX < b.left || e.clientX > b.right || e.clientY < b.top || e.clientY > b.bottom) d.close();
  });
}
