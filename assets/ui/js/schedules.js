// Schedules: one page of the list, enable/disable, trigger, edit, delete, and the
// create/edit form. The server checks cron expressions and time zones; errors come back
// per field and show next to the field they name.
import { $, h, api, poll, query, seg, badge, jobLink, agoCell, num, flash, Pager, latest, refreshAll, ApiError, patchRows } from "./api.js";

const PAGE = 25;
const pager = new Pager();
const PAGER_IDS = { first: "sch-first", prev: "sch-prev", next: "sch-next", label: "sch-page" };
const gate = latest();
const shown = new Map(); // name → schedule, as on the page now
let editing = null; // the schedule being edited, or null for a new one

// ---------- the list ----------

function row(s) {
  const job = s.job || {};
  const b = (label, data, cls) => h("button", { type: "button", class: `small ${cls || ""}`.trim(), dataset: data }, label);
  return h("tr", { dataset: { schedule: s.name, enabled: String(!!s.enabled) } },
    h("td", { class: "title" }, h("b", null, s.name)),
    h("td", null, h("code", null, s.cron)),
    h("td", { class: "opt" }, s.timezone || "UTC"),
    h("td", null, job.type || "–"),
    h("td", null, badge(s.enabled ? "enabled" : "disabled")),
    agoCell("td", s.next_run_at),
    h("td", null, agoCell("span", s.last_run_at), s.last_job_id ? [" ", jobLink(s.last_job_id)] : null),
    h("td", { class: "opt" }, `${num(s.runs_total)} · ${num(s.skipped_total)}`),
    h("td", { class: "actions-cell" },
      b(s.enabled ? "Disable" : "Enable", { schToggle: s.name }, "secondary"), " ",
      b("Trigger", { schTrigger: s.name }), " ",
      b("Edit", { schEdit: s.name }, "secondary"), " ",
      b("Delete", { schDelete: s.name }, "danger")));
}

export async function refresh() {
  const path = "/v1/worker/schedules" + query({ limit: PAGE, cursor: pager.cursor });
  let r;
  try {
    r = await gate(() => poll(path));
  } catch (err) {
    if (err.message !== "unauthorized") { $("schedules-error").textContent = err.message; $("schedules-error").hidden = false; }
    throw err;
  }
  if (!r) return;
  $("schedules-error").hidden = true;
  const items = r.v.items || [];
  shown.clear();
  for (const s of items) shown.set(s.name, s);
  pager.next = r.v.next_cursor || null;
  pager.show(PAGER_IDS);
  patchRows($("schedules-table").tBodies[0], items, (s) => s.name, row);
  $("schedules-empty").hidden = items.length > 0;
}

function reload() {
  refresh().catch((err) => { if (err.message !== "unauthorized") flash(err.message); });
}

/** The body of `PUT /v1/worker/schedules/{name}`. */
function body(s, overrides) {
  return { cron: s.cron, timezone: s.timezone, job: s.job, enabled: s.enabled, overlap: s.overlap, ...overrides };
}

async function act(btn, fn) {
  btn.disabled = true;
  try { await fn(); } catch (err) { if (err.message !== "unauthorized") flash(err.message); } finally { btn.disabled = false; }
}

function toggle(btn, s) {
  return act(btn, async () => {
    await api("PUT", `/v1/worker/schedules/${seg(s.name)}`, body(s, { enabled: !s.enabled }));
    flash(`Schedule ${s.name} ${s.enabled ? "disabled" : "enabled"}`);
    await refresh();
  });
}

function trigger(btn, s) {
  return act(btn, async () => {
    const job = await api("POST", `/v1/worker/schedules/${seg(s.name)}/actions/trigger`, {});
    const p = $("sch-triggered");
    p.replaceChildren(`${s.name} triggered: job `, job && job.job_id ? jobLink(job.job_id) : "–");
    p.dataset.job = (job && job.job_id) || "";
    p.hidden = false;
    flash(`Schedule ${s.name} triggered`);
    await refreshAll();
  });
}

function remove(btn, s) {
  if (!window.confirm(`Delete schedule ${s.name}? Jobs it already started stay.`)) return;
  return act(btn, async () => {
    await api("DELETE", `/v1/worker/schedules/${seg(s.name)}`);
    if (editing && editing.name === s.name) resetForm();
    flash(`Schedule ${s.name} deleted`);
    await refresh();
  });
}

// ---------- the form ----------

function clearErrors() {
  $("sch-error").textContent = "";
  $("sch-error-fields").replaceChildren();
  for (const el of $("schedule-form").querySelectorAll("[data-field-error]")) el.textContent = "";
  for (const el of $("schedule-form").querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/** The slot beside the input a field error names (`job.input.x` falls back to `job.input`). */
function slotFor(field) {
  const slots = [...$("schedule-form").querySelectorAll("[data-field-error]")];
  let f = String(field || "");
  while (f) {
    const hit = slots.find((el) => el.dataset.fieldError.split(" ").includes(f));
    if (hit) return hit;
    const cut = Math.max(f.lastIndexOf("."), f.lastIndexOf("["));
    if (cut <= 0) break;
    f = f.slice(0, cut);
  }
  return null;
}

function showErrors(err) {
  $("sch-error").textContent = err.message;
  const rest = [];
  for (const fe of (err instanceof ApiError ? err.fields : [])) {
    const slot = slotFor(fe.field);
    if (slot) {
      slot.textContent = slot.textContent ? `${slot.textContent}; ${fe.message}` : fe.message;
      const input = slot.parentElement.querySelector("input, textarea, select");
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      rest.push(h("li", { dataset: { field: fe.field } }, `${fe.field}: ${fe.message}`));
    }
  }
  $("sch-error-fields").replaceChildren(...rest);
}

function resetForm() {
  editing = null;
  $("schedule-form").reset();
  $("sch-name").readOnly = false;
  $("sch-tz").value = "UTC"; $("sch-input").value = "{}"; $("sch-overlap").value = "skip"; $("sch-enabled").checked = true;
  $("sch-form-title").textContent = "New schedule";
  clearErrors();
}

function edit(s) {
  resetForm();
  editing = s;
  const job = s.job || {};
  $("sch-name").value = s.name; $("sch-name").readOnly = true;
  $("sch-cron").value = s.cron || "";
  $("sch-tz").value = s.timezone || "UTC";
  $("sch-type").value = job.type || "";
  $("sch-input").value = JSON.stringify(job.input ?? {}, null, 2);
  $("sch-overlap").value = s.overlap === "allow" ? "allow" : "skip";
  $("sch-enabled").checked = !!s.enabled;
  $("sch-form-title").textContent = `Edit schedule ${s.name}`;
  $("sch-editor").open = true;
  $("schedule-form").scrollIntoView({ block: "nearest" });
  $("sch-cron").focus();
}

async function save(e) {
  e.preventDefault();
  clearErrors();
  const name = $("sch-name").value.trim();
  let input;
  try {
    input = JSON.parse($("sch-input").value.trim() || "{}");
  } catch (err) {
    showErrors(new ApiError(400, { error: { message: "The job input is not valid JSON.", fields: [{ field: "job.input", message: `not valid JSON: ${err.message}` }] } }));
    return;
  }
  // Fields of the job this form does not show (priority, max_attempts…) are kept.
  const base = editing && editing.name === name && editing.job ? editing.job : {};
  const payload = {
    cron: $("sch-cron").value.trim(),
    timezone: $("sch-tz").value.trim() || "UTC",
    job: { ...base, type: $("sch-type").value.trim(), input },
    enabled: $("sch-enabled").checked,
    overlap: $("sch-overlap").value,
  };
  const btn = $("sch-save");
  btn.disabled = true;
  try {
    await api("PUT", `/v1/worker/schedules/${seg(name)}`, payload);
    flash(`Schedule ${name} saved`);
    resetForm();
    await refresh();
  } catch (err) {
    if (err.message !== "unauthorized") showErrors(err);
  } finally { btn.disabled = false; }
}

// ---------- wiring ----------

export function init() {
  $("schedule-form").addEventListener("submit", save);
  $("sch-new").addEventListener("click", resetForm);
  $("sch-next").addEventListener("click", () => { if (pager.forward()) reload(); });
  $("sch-prev").addEventListener("click", () => { if (pager.back()) reload(); });
  $("sch-first").addEventListener("click", () => { pager.first(); reload(); });
  pager.show(PAGER_IDS);
  $("schedules-table").addEventListener("click", (e) => {
    const t = e.target.closest("button"); if (!t) return;
    const d = t.dataset;
    const s = shown.get(d.schToggle ?? d.schTrigger ?? d.schEdit ?? d.schDelete);
    if (!s) return;
    if (d.schToggle !== undefined) toggle(t, s);
    else if (d.schTrigger !== undefined) trigger(t, s);
    else if (d.schEdit !== undefined) edit(s);
    else if (d.schDelete !== undefined) remove(t, s);
  });
}
