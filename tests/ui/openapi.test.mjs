// `/openapi.json` of the real binary, validated by an independent OpenAPI validator
// (@seriousme/openapi-schema-validator, against the official OpenAPI 3.1 JSON schema),
// and every `$ref` in it resolves. The Rust tests check each answer against the
// document; this checks the document against the standard.
//
//   cargo build && cd tests/ui && npm ci && node --test openapi.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { serve } from "./server.mjs";

test("/openapi.json is a valid OpenAPI 3.1 document whose references all resolve", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wp-lite-openapi-"));
  const { child, base } = await serve(`sqlite://${dir}/openapi.db`, { WP_LITE_WORKERS: "none" });
  try {
    const res = await fetch(`${base}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = await res.json();
    assert.equal(doc.openapi, "3.1.0");

    const validator = new Validator();
    const result = await validator.validate(doc);
    assert.ok(result.valid, `not a valid OpenAPI ${validator.version} document: ${JSON.stringify(result.errors, null, 2)}`);
    assert.equal(validator.version, "3.1");
    // Dereferencing fails on a $ref that points nowhere.
    const resolved = validator.resolveRefs();
    assert.ok(resolved.paths["/v1/worker/jobs/lease"].post.responses["200"].content["application/json"].schema.properties.jobs);

    // Every operation says what it answers on success, and every JSON body it takes has
    // a schema: what a client generator needs.
    let operations = 0;
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        operations += 1;
        const success = Object.keys(op.responses).filter((s) => /^(1|2)\d\d$/.test(s));
        assert.ok(success.length > 0, `${method.toUpperCase()} ${p}: no documented success answer`);
      }
    }
    assert.ok(operations > 60, `${operations} operations`);
  } finally {
    child.kill("SIGTERM");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
