// Talking to this server: the session's CSRF token, JSON in and out, errors as ApiError.
// Also the few DOM helpers every section uses (text only: nothing from the server is
// ever parsed as HTML).

export const state = { csrf: null };
export const $ = (id) => document.getElementById(id);

export function cookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : null;
}

/** A 4xx/5xx answer: `{"detail": code, "error": {"code", "message", "fields"?}}`. */
export class ApiError extends Error {
  constructor(status, data, fallback) {
    const e = (data && data.error) || {};
    super(e.message || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (data && data.detail) || null;
    this.fields = Array.isArray(e.fields) ? e.fields : [];
  }
}

let unauthorized = () => {};
/** What to do when the session is gone (main.js shows the login form). */
export function onUnauthorized(fn) { unauthorized = fn; }

let refresher = async () => {};
/** main.js registers the whole page's refresh; sections call `refreshAll` after a change. */
export function onRefresh(fn) { refresher = fn; }
export function refreshAll() { return refresher(); }

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf || cookie("XSRF-TOKEN") || "";
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    cache: method === "GET" ? "no-cache" : "default",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { unauthorized(); throw new Error("unauthorized"); }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data, res.statusText);
  return data;
}

// Polled reads are conditional: the server tags each JSON answer (ETag), and with
// `cache: "no-cache"` the browser revalidates its copy on every poll (If-None-Match), so an
// unchanged list is a bodiless 304 that the browser answers from its cache.
export function poll(path) { return api("GET", path); }

/** `?a=1&b=x` from the entries whose value is neither null nor "". */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

/** A path segment from a server value (a queue type, a schedule name, an id). */
export const seg = (s) => encodeURIComponent(String(s));

// ---------- DOM ----------

/**
 * `h("td", { class: "opt", dataset: { job: id } }, "text", childNode)`: an element whose
 * strings become text nodes. Attributes are set one by one; no HTML is parsed.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) { if (dv !== null && dv !== undefined) el.dataset[dk] = String(dv); }
    else if (k === "text") el.textContent = String(v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * Puts one row per item into `tbody`, keyed by `keyOf(item)`. A row whose item is
 * unchanged since the last poll stays the same element (a button being clicked is never
 * swapped out from under the pointer); only its relative times (`data-ago`) are updated.
 */
const signatures = new WeakMap();
export function patchRows(tbody, items, keyOf, build) {
  const old = new Map([...tbody.rows].map((tr) => [tr.dataset.key, tr]));
  const want = items.map((it) => {
    const key = String(keyOf(it)), sig = JSON.stringify(it);
    let tr = old.get(key);
    if (!tr || signatures.get(tr) !== sig) {
      tr = build(it);
      tr.dataset.key = key;
      signatures.set(tr, sig);
    }
    return tr;
  });
  want.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
  while (tbody.children.length > want.length) tbody.lastElementChild.remove();
  refreshAgo(tbody);
}

/** A relative time that later polls keep current. */
export function agoCell(tag, ts, attrs) {
  return h(tag, { ...(attrs || {}), title: ts || null, dataset: { ...((attrs && attrs.dataset) || {}), ago: ts || null } }, ago(ts));
}
export function refreshAgo(root) {
  for (const el of root.querySelectorAll("[data-ago]")) el.textContent = ago(el.dataset.ago);
}

/** True when `value` differs from what `holder` showed last (for panels redrawn by polls). */
const lastShown = new WeakMap();
export function changed(holder, value) {
  const sig = JSON.stringify(value);
  if (lastShown.get(holder) === sig) return false;
  lastShown.set(holder, sig);
  return true;
}
export function forget(holder) { lastShown.delete(holder); }

/** A status badge; the class only ever comes from a known list. */
const BADGES = new Set(["alive", "silent", "stopped", "queued", "leased", "succeeded", "failed", "canceled",
  "draft", "scheduled", "sending", "sent", "cancelled", "paused", "running", "enabled", "disabled"]);
export function badge(status) {
  const s = String(status ?? "");
  return h("span", { class: BADGES.has(s) ? `badge ${s}` : "badge" }, s);
}

/**
 * A job id as a button that opens the job's detail (see jobs.js). Short form: the id's
 * end (ids are time-ordered UUIDs, so jobs of the same moment share their first digits).
 */
export function jobLink(id, full) {
  const s = String(id);
  return h("button", { type: "button", class: "link mono", title: s, dataset: { jobOpen: s } }, full ? s : "…" + s.slice(-8));
}

export function ago(ts) {
  if (!ts) return "–";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (Number.isNaN(s)) return "–";
  const a = Math.abs(s), sign = s < 0 ? "in " : "", post = s < 0 ? "" : " ago";
  if (a < 60) return `${sign}${Math.round(a)} s${post}`;
  if (a < 3600) return `${sign}${Math.round(a / 60)} min${post}`;
  if (a < 86400 * 2) return `${sign}${Math.round(a / 3600)} h${post}`;
  return `${sign}${Math.round(a / 86400)} d${post}`;
}
export function when(ts) {
  if (!ts) return "–";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}
export function num(n) { return (n ?? 0).toLocaleString(); }
export function json(v) { return v === null || v === undefined ? "–" : JSON.stringify(v, null, 2); }

export function flash(msg) {
  const f = $("flash"); f.textContent = msg; f.hidden = false;
  clearTimeout(flash.t); flash.t = setTimeout(() => (f.hidden = true), 3000);
}

/** A bounded stack of cursors: `Previous` goes back through the pages seen. */
export class Pager {
  constructor() { this.first(); }
  first() { this.cursor = null; this.stack = []; this.next = null; this.page = 1; }
  forward() {
    if (!this.next) return false;
    this.stack.push(this.cursor);
    if (this.stack.length > 50) this.stack.shift(); // the oldest pages are forgotten
    this.cursor = this.next; this.next = null; this.page += 1;
    return true;
  }
  back() {
    if (!this.stack.length) return false;
    this.cursor = this.stack.pop(); this.next = null; this.page -= 1;
    return true;
  }
  /** Shows the page number and enables the buttons (`ids`: first, prev, next, label). */
  show(ids) {
    $(ids.first).disabled = this.cursor === null;
    $(ids.prev).disabled = this.stack.length === 0;
    $(ids.next).disabled = !this.next;
    $(ids.label).textContent = `page ${this.page}`;
  }
}

/** The newest call wins: a slow answer to an older request is dropped. */
export function latest() {
  let gen = 0;
  return async (fn) => {
    const mine = ++gen;
    const v = await fn();
    return mine === gen ? { v } : null;
  };
}
