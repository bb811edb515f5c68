import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Lookup, resolveServer } from "../src/serverCommand";

function lookup(executables: string[], over: Partial<Lookup> = {}): Lookup {
  return {
    isExecutable: (file) => executables.includes(file),
    pathDirs: ["/usr/bin", "/opt/bin"],
    folders: ["/work/proj"],
    home: "/home/u",
    windows: false,
    ...over,
  };
}

describe("resolveServer", () => {
  it("uses qcn.serverPath when it is set", () => {
    const found = resolveServer("/venv/bin/qcn-lsp", ["--log-level", "DEBUG"], lookup(["/venv/bin/qcn-lsp"]));
    assert.deepEqual(found, { ok: true, command: "/venv/bin/qcn-lsp", args: ["--log-level", "DEBUG"], source: "qcn.serverPath" });
  });

  it("expands ~, ${workspaceFolder} and relative paths, and looks up bare names on PATH", () => {
    assert.ok(resolveServer("~/bin/qcn-lsp", [], lookup(["/home/u/bin/qcn-lsp"])).ok);
    assert.ok(resolveServer("${workspaceFolder}/.venv/bin/qcn-lsp", [], lookup(["/work/proj/.venv/bin/qcn-lsp"])).ok);
    assert.ok(resolveServer("tools/qcn-lsp", [], lookup(["/work/proj/tools/qcn-lsp"])).ok);
    const named = resolveServer("qcn-lsp-dev", [], lookup(["/opt/bin/qcn-lsp-dev"]));
    assert.ok(named.ok && named.command === "/opt/bin/qcn-lsp-dev");
  });

  it("says what is wrong with a serverPath that does not exist", () => {
    const missing = resolveServer("/nope/qcn-lsp", [], lookup([]));
    assert.equal(missing.ok, false);
    assert.match(!missing.ok ? missing.message : "", /qcn\.serverPath is "\/nope\/qcn-lsp", which is not an executable file/);
  });

  it("falls back to PATH, then to the workspace's .venv", () => {
    const fromPath = resolveServer("", [], lookup(["/opt/bin/qcn-lsp", "/work/proj/.venv/bin/qcn-lsp"]));
    assert.ok(fromPath.ok && fromPath.command === "/opt/bin/qcn-lsp" && fromPath.source === "PATH");
    const fromVenv = resolveServer("", [], lookup(["/work/proj/.venv/bin/qcn-lsp"]));
    assert.ok(fromVenv.ok && fromVenv.command === "/work/proj/.venv/bin/qcn-lsp");
  });

  it("explains how to install the server when none is found", () => {
    const none = resolveServer("", [], lookup([]));
    assert.equal(none.ok, false);
    const message = !none.ok ? none.message : "";
    assert.match(message, /not found/);
    assert.match(message, /qcn\.serverPath/);
    assert.match(message, /Restart Server/);
  });
});
