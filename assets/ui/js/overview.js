// The stat tiles and the workers table, from the telemetry summary.
import { $, h, badge, agoCell, num, poll, patchRows } from "./api.js";

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
  patchRows($("workers-table").tBodies[0], procs, (p) => p.name, (p) => {
    const status = p.alive ? "alive" : (p.state === "stopped" ? "stopped" : "silent");
    return h("tr", { dataset: { worker: p.name, status } },
      h("td", null, h("b", null, p.name)),
      h("td", null, badge(status)),
      h("td", { class: "opt" }, `${p.host ?? ""} · ${p.pid ?? ""}`),
      agoCell("td", p.last_tick_at),
      h("td", { class: "opt" }, p.last_tick_ms ?? "–"),
      agoCell("td", p.last_heartbeat_at, { class: "opt" }));
  });
  $("workers-empty").hidden = procs.length > 0;
}

export async function refresh() {
  const s = await poll("/v1/admin/telemetry/summary");
  renderStats(s.workers);
  renderWorkers(s.workers.processes);
}
