import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecentMessages, describeError, describeOutcome } from "../src/messages";

describe("describeOutcome", () => {
  it("says which files changed, and what was skipped", () => {
    assert.deepEqual(describeOutcome("refactor add", { applied: true, cancelled: false, files: ["calc.py", "use.py"], reason: null }), {
      level: "info",
      text: "qcn: refactor add changed calc.py, use.py.",
    });
    assert.match(
      describeOutcome("edit files", { applied: true, cancelled: false, files: ["a.py"], reason: "b.py: old_text not found" }).text,
      /Skipped: b\.py: old_text not found/,
    );
  });

  it("shows the reason when nothing was applied", () => {
    const message = describeOutcome("rewrite", { applied: false, cancelled: false, files: [], reason: "the model proposed no edit" });
    assert.deepEqual(message, { level: "warning", text: "qcn: rewrite: nothing was applied: the model proposed no edit." });
    assert.match(describeOutcome("rewrite", { applied: false, cancelled: false, files: [] }).text, /declined/);
  });

  it("reports a cancellation as such", () => {
    assert.match(describeOutcome("refactor", { applied: false, cancelled: true, files: [] }).text, /cancelled; nothing was changed/);
  });
});

describe("describeError", () => {
  it("keeps the server's own message, as a warning for RequestFailed", () => {
    const error = Object.assign(new Error("qcn-lsp: model still loading"), { code: -32803 });
    assert.deepEqual(describeError("refactor", error), { level: "warning", text: "qcn-lsp: model still loading" });
    assert.deepEqual(describeError("status", new Error("boom")), { level: "error", text: "qcn: status failed: boom" });
  });
});

describe("RecentMessages", () => {
  it("remembers messages for a while", () => {
    const recent = new RecentMessages(1000);
    recent.note("qcn-lsp: calc.py: the model proposed no edit", 0);
    assert.ok(recent.seen("calc.py: the model proposed no edit", 500));
    assert.ok(!recent.seen("something else", 500));
    assert.ok(!recent.seen("", 500));
    assert.ok(!recent.seen("calc.py: the model proposed no edit", 1501));
  });
});
