// The real binary for the Node tests: where it is, a clean environment, and `serve` on a
// free port.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.WP_LITE_BIN || path.join(ROOT, "target/debug/wp-lite");
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const ARTIFACTS = path.join(ROOT, "artifacts");

// A clean environment for the binary: nothing configured from outside.
export function env(extra = {}) {
  const e = { ...process.env, ...extra };
  for (const k of ["WP_LITE_DATABASE_URL", "WP_LITE_ADMIN_TOKEN", "WP_LITE_WORKERS", "RUST_LOG", "WP_LITE_BIND"]) delete e[k];
  return { ...e, ...extra };
}

/** Starts `wp-lite serve` and resolves with { child, base } once it logs "wp-lite serving". */
export function serve(dbUrl, extraEnv) {
  const child = spawn(BIN, ["--database-url", dbUrl, "--log-format", "json", "serve", "--bind", "127.0.0.1:0"], {
    env: env(extraEnv),
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr });
    let found = false;
    lines.on("line", (line) => {
      log.push(line);
      if (found) return;
      try {
        const v = JSON.parse(line);
        if (v.message === "wp-lite serving") {
          found = true;
          resolve({ child, base: `http://${v.addr}`, log });
        }
      } catch { /* not JSON */ }
    });
    child.on("exit", (code) => {
      if (!found) reject(new Error(`serve exited (${code}) before listening:\n${log.join("\n")}`));
    });
    child.on("error", reject);
  });
}
