// `npm test`: every test/*.test.mjs under node's test runner. With --test-force-exit
// where this Node has it (20.14+), so a test that times out with a socket still open
// fails the run instead of keeping it alive; Debian 12's Node 18 runs without it.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const dir = path.dirname(fileURLToPath(import.meta.url));
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".test.mjs"))
  .sort()
  .map((f) => path.join(dir, f));
const forceExit = spawnSync(process.execPath, ["--test-force-exit", "--version"]).status === 0;
const args = ["--test", ...(forceExit ? ["--test-force-exit"] : []), ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: "inherit" });
process.exit(r.status ?? 1);
