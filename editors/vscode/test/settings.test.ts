import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EXTENSION_KEYS, serverKeys, serverSettings } from "../src/settings";

// out/test/ -> the extension's package.json
const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const properties: Record<string, { default: unknown }> = manifest.contributes.configuration.properties;
const ENV = { env: {}, home: "/home/u" };

describe("settings", () => {
  it("sends every server key and none of the extension's own", () => {
    const keys = serverKeys(manifest);
    assert.ok(keys.includes("model.path"));
    assert.ok(keys.includes("context.budgetTokens"));
    for (const key of EXTENSION_KEYS) {
      assert.ok(`qcn.${key}` in properties, `${key} is a contributed setting`);
      assert.ok(!keys.includes(key));
    }
    assert.equal(keys.length + EXTENSION_KEYS.length, Object.keys(properties).length);
  });

  it("nests dotted keys as the server expects", () => {
    const values: Record<string, unknown> = { "model.path": "/m.gguf", "model.contextLength": 4096, "context.ignore": ["*.log"] };
    const settings = serverSettings(["model.path", "model.contextLength", "context.ignore"], (key) => values[key], ENV);
    assert.deepEqual(settings, { model: { path: "/m.gguf", contextLength: 4096 }, context: { ignore: ["*.log"] } });
  });

  it("sends the contributed defaults when nothing is set", () => {
    const keys = serverKeys(manifest);
    const settings = serverSettings(keys, (key) => properties[`qcn.${key}`].default, ENV) as Record<string, Record<string, unknown>>;
    assert.equal(settings.completion.maxTokens, 128);
    assert.equal(settings.backend.kind, "local");
    assert.equal(settings.model.threads, null);
  });

  it("resolves environment-dependent defaults as the server does", () => {
    const read = (key: string) => properties[`qcn.${key}`].default;
    const plain = serverSettings(["model.path", "cache.dir"], read, ENV);
    assert.deepEqual(plain, { model: { path: null }, cache: { dir: "/home/u/.cache/qcn-lsp" } });
    const env = { env: { QCN_MODEL: "/models/q.gguf", XDG_CACHE_HOME: "/xdg" }, home: "/home/u" };
    assert.deepEqual(serverSettings(["model.path", "cache.dir"], read, env), {
      model: { path: "/models/q.gguf" },
      cache: { dir: "/xdg/qcn-lsp" },
    });
    const set = serverSettings(["model.path"], () => "/mine.gguf", env);
    assert.deepEqual(set, { model: { path: "/mine.gguf" } });
  });
});
