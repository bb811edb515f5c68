import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestReport, ServerStatus } from "../src/protocol";
import { StatusModel } from "../src/status";

const REPORT: RequestReport = {
  promptTokens: 1842,
  reusedTokens: 1830,
  prefilledTokens: 12,
  restoreKind: "partial",
  restoredFrom: 1830,
  generatedTokens: 20,
  cancelled: false,
  ms: { total: 411.6, first_token: 80.2 },
};

function status(state: string, lastRequest: RequestReport | null = null): ServerStatus {
  return {
    engine: { state, model: "/models/tiny.gguf", nCtx: 4096 },
    lastRequest,
    index: { state: "ready: 3 files, 9 definitions in 0.1 s", error: null },
    settings: {},
  };
}

describe("StatusModel", () => {
  it("says the server is starting before it answered", () => {
    assert.equal(new StatusModel().view().text, "$(sync~spin) qcn: starting");
  });

  it("shows progress first, with its percentage", () => {
    const model = new StatusModel();
    model.applyStatus(status("ready"));
    model.progressBegin("t1", "qcn-lsp: indexing workspace", "0/10 files", 0);
    model.progressReport("t1", "4/10 files", 40);
    const view = model.view();
    assert.equal(view.text, "$(sync~spin) qcn: indexing workspace 40%");
    assert.match(view.tooltip, /qcn-lsp: indexing workspace: 4\/10 files/);
    model.progressEnd("t1");
    assert.equal(model.view().text, "$(sparkle) qcn: ready");
  });

  it("shows the last completion's latency and reused / prefilled tokens", () => {
    const model = new StatusModel();
    model.applyStatus(status("ready"));
    model.completionDone(REPORT);
    const view = model.view();
    assert.equal(view.text, "$(sparkle) qcn 412 ms · 1,830 reused · 12 prefilled");
    assert.match(view.tooltip, /first token 80 ms/);
    assert.match(view.tooltip, /restore: partial/);
    assert.match(view.tooltip, /tiny\.gguf, 4,096 ctx/);
  });

  it("warns when the engine is not usable", () => {
    const model = new StatusModel();
    model.applyStatus(status("no model configured: set model.path"));
    assert.deepEqual([model.view().text, model.view().severity], ["$(warning) qcn: no model", "warning"]);
    model.applyStatus(status("model failed to load: bad file"));
    assert.equal(model.view().severity, "error");
    model.applyStatus(status("model still loading"));
    assert.equal(model.view().text, "$(sync~spin) qcn: loading model");
  });

  it("puts an extension problem above everything", () => {
    const model = new StatusModel();
    model.applyStatus(status("ready", REPORT));
    model.setProblem("qcn-lsp: the language server was not found");
    const view = model.view();
    assert.equal(view.severity, "error");
    assert.match(view.tooltip, /^qcn-lsp: the language server was not found/);
  });
});
