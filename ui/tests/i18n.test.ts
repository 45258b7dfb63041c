import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import zhCN from "../src/i18n/zh-CN";
import en from "../src/i18n/en";

type Tree = { [k: string]: string | Tree };

function keys(t: Tree, prefix = ""): string[] {
  return Object.entries(t).flatMap(([k, v]) => (typeof v === "string" ? [prefix + k] : keys(v, `${prefix}${k}.`)));
}

function leaves(t: Tree): [string, string][] {
  const out: [string, string][] = [];
  const walk = (n: Tree, p: string) =>
    Object.entries(n).forEach(([k, v]) => (typeof v === "string" ? out.push([p + k, v]) : walk(v, `${p}${k}.`)));
  walk(t, "");
  return out;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : /\.(vue|ts)$/.test(f) ? [p] : [];
  });
}

describe("i18n messages", () => {
  it("zh-CN and en have exactly the same keys", () => {
    const a = keys(zhCN as Tree).sort();
    const b = keys(en as Tree).sort();
    expect(a.filter((k) => !b.includes(k))).toEqual([]);
    expect(b.filter((k) => !a.includes(k))).toEqual([]);
    expect(a.length).toBeGreaterThan(200);
  });

  it("has no empty message and no stray vue-i18n syntax", () => {
    for (const tree of [zhCN, en] as Tree[]) {
      for (const [k, v] of leaves(tree)) {
        expect(v.trim(), k).not.toBe("");
        // @ starts a linked message and | a plural in vue-i18n
        expect(v, k).not.toMatch(/[@|]/);
      }
    }
  });

  it("both locales use the same placeholders for each key", () => {
    const ph = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    const enMap = new Map(leaves(en as Tree));
    for (const [k, v] of leaves(zhCN as Tree)) expect(ph(enMap.get(k)!), k).toEqual(ph(v));
  });

  it("every literal key the code translates exists", () => {
    const all = new Set(keys(zhCN as Tree));
    const used = new Set<string>();
    for (const f of files(join(__dirname, "../src"))) {
      const src = readFileSync(f, "utf8");
      for (const m of src.matchAll(/\bt\(\s*["']([a-zA-Z0-9_.]+)["']/g)) used.add(m[1]);
      for (const m of src.matchAll(/key: "([a-z]+\.[a-zA-Z0-9_.]+)"/g)) used.add(m[1]);
    }
    expect(used.size).toBeGreaterThan(100);
    expect([...used].filter((k) => !all.has(k))).toEqual([]);
  });
});
