// The SDK's TypeScript types against docs/bridge-protocol.md: every JSON example is
// assigned to the declared params/result/event types and `tsc --noEmit` must accept it
// (see doc-examples.mjs); test/usage.ts checks the public API's typing, misuse included.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EVENTS, METHODS } from "../dist/index.js";
import { docExamplesToTs } from "./doc-examples.mjs";

const pkg = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const docPath = path.join(pkg, "..", "..", "docs", "bridge-protocol.md");
const doc = readFileSync(docPath, "utf8");

/**
 * Type-checks the generated `sources` (one module each) and `extraFiles` in one `tsc`
 * run; returns its status, its output and the generated files' names.
 */
function typecheck(sources, extraFiles = []) {
  mkdirSync(path.join(pkg, ".tmp"), { recursive: true });
  const dir = mkdtempSync(path.join(pkg, ".tmp", "doc-"));
  try {
    const files = sources.map((source, i) => {
      const file = path.join(dir, `doc-examples-${i}.ts`);
      writeFileSync(file, source);
      return file;
    });
    const tsc = path.join(pkg, "node_modules", "typescript", "bin", "tsc");
    const args = [
      tsc,
      "--noEmit",
      "--strict",
      "--noUncheckedIndexedAccess",
      "--target", "ES2022",
      "--module", "ES2022",
      "--moduleResolution", "bundler",
      "--lib", "ES2022,DOM,DOM.Iterable",
      "--types", "node",
      "--esModuleInterop",
      ...files,
      ...extraFiles,
    ];
    const r = spawnSync(process.execPath, args, { cwd: pkg, encoding: "utf8" });
    return { status: r.status, output: `${r.stdout}${r.stderr}`, files: files.map((f) => path.basename(f)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("every example of docs/bridge-protocol.md type-checks against the SDK types", () => {
  const { source, seen } = docExamplesToTs(doc, "../../src/index.js");
  // The document covers every method and event (as the Rust test demands), so this
  // checks every params, result and event type of the SDK.
  assert.deepEqual([...seen.requests].sort(), [...METHODS].sort(), "methods without an example request");
  assert.deepEqual([...seen.results].sort(), [...METHODS].sort(), "methods without an example result");
  assert.deepEqual([...seen.events].sort(), [...EVENTS].sort(), "events without an example");
  assert.ok(seen.errors >= 3);
  const r = typecheck([source], [path.join(pkg, "test", "usage.ts")]);
  assert.equal(r.status, 0, `tsc refused the document's examples or test/usage.ts:\n${r.output}`);
});

test("the check fails on examples the types do not allow", () => {
  const mutations = [
    // A PIN param does not exist.
    ['"format": "cms_detached", "hash": "sm3"', '"format": "cms_detached", "pin": "12345678", "hash": "sm3"'],
    // A misspelt result field.
    ['"retries_left": 2', '"retries_lef": 2'],
    // An algorithm the type does not have.
    ['"algorithms": ["sm2"]', '"algorithms": ["sm9"]'],
    // A wrong code for a name, against the table generated from Rust.
    ['"code": 4001', '"code": 4002'],
    // A required result field missing.
    ['{"valid": false, "error": 2001, "chain": "not_checked"}', '{"valid": false, "error": 2001}'],
    // An event param of the wrong type.
    ['"done": 104857600', '"done": "104857600"'],
  ];
  const sources = mutations.map(([from, to]) => {
    assert.ok(doc.includes(from), `the document no longer contains ${from}`);
    return docExamplesToTs(doc.replace(from, to), "../../src/index.js").source;
  });
  // One tsc run; each mutated document (one module each) must have an error of its own.
  const r = typecheck(sources);
  assert.notEqual(r.status, 0, r.output);
  if (process.env.SHOW_TSC) console.log(r.output);
  r.files.forEach((file, i) => {
    assert.match(r.output, new RegExp(`${file}\\(\\d+,\\d+\\): error TS`), `tsc accepted a document with ${mutations[i][1]}`);
  });
});
