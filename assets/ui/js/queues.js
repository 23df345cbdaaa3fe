// Queues: counts per job type, a depth chart, pause/resume and a concurrency limit each.
// Rows are kept per type and updated in place, so a limit being typed survives polls.
import { $, h, badge, num, poll, api, seg, flash, latest } from "./api.js";

const samples = [];
const rows = new Map(); // type → { tr, cells, input, toggle }
const gate = latest();

function makeRow(type) {
  const cell = (cls) => h("td", cls ? { class: cls } : null);
  const cells = {
    state: h("span", { class: "queue-state" }), queued: cell(), leased: cell(), succeeded: cell("opt"), failed: cell(),
    canceled: cell("opt"), oldest: cell("opt"), expired: cell("opt"),
  };
  const input = h("input", {
    type: "number", min: "0", step: "1", inputmode: "numeric", placeholder: "none",
    class: "limit-input", "aria-label": `Max leased for ${type}`, dataset: { limitFor: type },
  });
  input.addEventListener("input", () => { input.dataset.dirty = "1"; });
  input.addEventListener("keydown", (e) => { if (e.key === "Escape") { delete input.dataset.dirty; input.blur(); } });
  const form = h("form", { class: "inline-form", dataset: { limitForm: type } },
    input, h("button", { type: "submit", class: "small secondary", dataset: { limitSave: type } }, "Save"));
  form.addEventListener("submit", (e) => { e.preventDefault(); saveLimit(type, input, form.querySelector("button")); });
  const toggle = h("button", { type: "button", class: "small" });
  toggle.addEventListener("click", () => togglePause(type, toggle));
  const tr = h("tr", { dataset: { queue: type } },
    h("td", { class: "title" }, h("b", null, type), " ", cells.state), cells.queued, cells.leased, cells.succeeded, cells.failed,
    cells.canceled, cells.oldest, cells.expired, h("td", null, form), h("td", { class: "actions-cell" }, toggle));
  return { tr, cells, input, toggle };
}

function update(q) {
  let r = rows.get(q.type);
  if (!r) { r = makeRow(q.type); rows.set(q.type, r); }
  const c = q.counts || {};
  const paused = q.paused === true;
  r.tr.dataset.paused = String(paused);
  // Only a paused queue says so (beside its type, also on a phone).
  r.cells.state.replaceChildren(paused ? badge("paused") : "");
  r.cells.queued.textContent = num(c.queued);
  r.cells.leased.textContent = num(c.leased);
  r.cells.succeeded.textContent = num(c.succeeded);
  r.cells.failed.textContent = num(c.failed);
  r.cells.canceled.textContent = num(c.canceled);
  r.cells.oldest.textContent = q.oldest_queued_age_seconds == null ? "–" : q.oldest_queued_age_seconds.toFixed(1) + " s";
  r.cells.expired.textContent = num(q.leases_expired_total);
  const limit = q.max_leased == null ? "" : String(q.max_leased);
  r.tr.dataset.maxLeased = limit;
  // Someone typing keeps what they typed until they save (or press Escape).
  if (!r.input.dataset.dirty && document.activeElement !== r.input) r.input.value = limit;
  if (!r.toggle.disabled) {
    r.toggle.textContent = paused ? "Resume" : "Pause";
    r.toggle.className = paused ? "small" : "small secondary";
    r.toggle.dataset.action = paused ? "resume" : "pause";
  }
  return r;
}

function render(queues) {
  const want = queues.map((q) => update(q).tr);
  const seen = new Set(queues.map((q) => q.type));
  for (const k of [...rows.keys()]) if (!seen.has(k)) rows.delete(k);
  const body = $("queues-table").tBodies[0];
  // Re-attach only when the set or order changed: detaching would blur a focused input.
  const same = body.children.length === want.length && want.every((tr, i) => body.children[i] === tr);
  if (!same) body.replaceChildren(...want);
  $("queues-empty").hidden = queues.length > 0;
}

async function togglePause(type, btn) {
  const action = btn.dataset.action === "resume" ? "resume" : "pause";
  btn.disabled = true;
  try {
    const q = await api("POST", `/v1/worker/queues/${seg(type)}/${action}`, {});
    btn.disabled = false;
    if (q && q.type) update(q);
    flash(action === "pause" ? `Queue ${type} paused` : `Queue ${type} resumed`);
  } catch (err) {
    btn.disabled = false;
    if (err.message !== "unauthorized") flash(`${type}: ${err.message}`);
  }
  refresh().catch(() => {});
}

async function saveLimit(type, input, btn) {
  const raw = input.value.trim();
  if (input.validity.badInput || (raw !== "" && !/^\d+$/.test(raw))) {
    flash(`${type}: the limit must be a whole number (or empty for none)`);
    return;
  }
  const max = raw === "" ? null : Number(raw);
  btn.disabled = true;
  try {
    const q = await api("PUT", `/v1/worker/queues/${seg(type)}/limits`, { max_leased: max });
    delete input.dataset.dirty;
    if (q && q.type) update(q);
    flash(max === null ? `Queue ${type}: no limit` : `Queue ${type}: at most ${max} leased`);
  } catch (err) {
    if (err.message !== "unauthorized") {
      const f = err.fields && err.fields.length ? err.fields.map((x) => `${x.field} ${x.message}`).join("; ") : err.message;
      flash(`${type}: ${f}`);
    }
  } finally { btn.disabled = false; }
  refresh().catch(() => {});
}

export function drawChart() {
  const c = $("chart"); const ctx = c.getContext("2d");
  const w = (c.width = c.clientWidth * devicePixelRatio), h = (c.height = 140 * devicePixelRatio);
  ctx.clearRect(0, 0, w, h);
  const s = samples; if (s.length < 2) return;
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

/** One chart sample per poll (not per action), so the x axis stays time. */
export async function refresh(sample = false) {
  const r = await gate(() => poll("/v1/worker/queues"));
  if (!r) return;
  const queues = r.v.items || [];
  render(queues);
  if (sample) {
    const sum = (k) => queues.reduce((a, q) => a + ((q.counts && q.counts[k]) || 0), 0);
    samples.push({ queued: sum("queued"), leased: sum("leased"), failed: sum("failed") });
    if (samples.length > 90) samples.shift();
    drawChart();
  }
}
