// wp-lite observability page. No framework, no network but this server.
import { $, state, cookie, api, onUnauthorized, onRefresh } from "./api.js";
import * as overview from "./overview.js";
import * as queues from "./queues.js";
import * as jobs from "./jobs.js";
import * as schedules from "./schedules.js";
import * as broadcasts from "./broadcasts.js";

let timer = null;
let polling = false;

function showLogin() {
  clearInterval(timer); timer = null;
  for (const id of ["job-detail", "bc-detail"]) if ($(id).open) $(id).close();
  $("dash").hidden = true; $("logout").hidden = true; $("login-view").hidden = false;
}
function showDash() {
  $("login-view").hidden = true; $("dash").hidden = false; $("logout").hidden = false;
  tick();
  if (!timer) timer = setInterval(tick, 2000);
}
onUnauthorized(showLogin);

/** Everything on the page, each part on its own: one failing part leaves the rest updating. */
async function refresh(sample = false) {
  // A page in a background tab does not poll; it catches up when it is shown again.
  if (document.hidden) return;
  const results = await Promise.allSettled([
    overview.refresh(), queues.refresh(sample), jobs.refresh(), schedules.refresh(), broadcasts.refresh(),
    jobs.refreshDetail(), broadcasts.refreshDetail(),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  if (!failed) $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  else if (failed.reason.message !== "unauthorized") $("updated").textContent = "update failed: " + failed.reason.message;
}
onRefresh(() => refresh(false));

/** The timer's refresh: skipped while the previous one is still out. */
async function tick() {
  if (polling) return;
  polling = true;
  try { await refresh(true); } finally { polling = false; }
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

jobs.init();
schedules.init();
broadcasts.init();
window.addEventListener("resize", queues.drawChart);
document.addEventListener("visibilitychange", () => { if (!document.hidden && timer) tick(); });

// A session survives a reload: the CSRF token is also in the readable XSRF-TOKEN cookie.
(async () => {
  state.csrf = cookie("XSRF-TOKEN");
  try { await api("GET", "/v1/admin/telemetry/summary"); showDash(); } catch (_) { showLogin(); }
})();
