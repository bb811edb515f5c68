import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CompletionProgressParams } from "../src/protocol";
import { StreamKey, StreamStore, Throttle, Timers, sanitizeCompletion } from "../src/stream";

const KEY: StreamKey = { uri: "file:///w/app.py", version: 3, line: 4, character: 8 };

function progress(text: string, done = false, over: Partial<CompletionProgressParams> = {}): CompletionProgressParams {
  return { uri: KEY.uri, version: KEY.version, position: { line: KEY.line, character: KEY.character }, text, done, ...over };
}

describe("StreamStore", () => {
  it("serves the growing text of the request for the same version and cursor", () => {
    const store = new StreamStore();
    const stream = store.start(KEY, () => assert.fail("not cancelled"));
    assert.equal(store.progress(progress("ret")), stream);
    assert.equal(store.progress(progress("return a")), stream);
    assert.equal(store.get({ ...KEY })?.text, "return a");
    assert.equal(stream.done, false);
    assert.equal(store.progress(progress("return a + b", true)), stream);
    assert.equal(stream.done, true);
    assert.equal(stream.text, "return a + b");
  });

  it("drops notifications of other versions and cursors, and unchanged texts", () => {
    const store = new StreamStore();
    store.start(KEY, () => {});
    assert.equal(store.progress(progress("x", false, { version: 2 })), undefined);
    assert.equal(store.progress(progress("x", false, { position: { line: 4, character: 9 } })), undefined);
    assert.equal(store.progress(progress("x", false, { uri: "file:///w/other.py" })), undefined);
    assert.ok(store.progress(progress("x")));
    assert.equal(store.progress(progress("x")), undefined, "same text: nothing to re-render");
  });

  it("lets the response win over notifications, and ignores streaming after it", () => {
    const store = new StreamStore();
    const stream = store.start(KEY, () => {});
    store.progress(progress("return a + b + c"));
    assert.ok(stream.answer("return a + b"));
    assert.equal(store.progress(progress("return a + b + c + d")), undefined);
    assert.equal(store.progress(progress("something else", true)), undefined);
    assert.equal(stream.text, "return a + b");
  });

  it("cancels the request when the document moves on, not when it is asked again", () => {
    const store = new StreamStore();
    let cancelled = 0;
    store.start(KEY, () => cancelled++);
    store.documentChanged(KEY.uri, KEY.version);
    assert.equal(cancelled, 0);
    assert.ok(store.get(KEY));
    store.documentChanged(KEY.uri, KEY.version + 1);
    assert.equal(cancelled, 1);
    assert.equal(store.get(KEY), undefined);
  });

  it("cancels a running request when the cursor leaves, keeps a finished one", () => {
    const store = new StreamStore();
    let cancelled = 0;
    store.start(KEY, () => cancelled++);
    store.cursorMoved(KEY.uri, KEY.line, KEY.character);
    assert.equal(cancelled, 0);
    store.cursorMoved(KEY.uri, KEY.line + 1, 0);
    assert.equal(cancelled, 1);

    const finished = store.start(KEY, () => cancelled++);
    finished.answer("done");
    store.cursorMoved(KEY.uri, 0, 0);
    assert.equal(store.get(KEY)?.text, "done");
    assert.equal(cancelled, 1);
  });

  it("cancels the document's previous request when a new one starts", () => {
    const store = new StreamStore();
    let cancelled = 0;
    store.start(KEY, () => cancelled++);
    store.start({ ...KEY, version: 4 }, () => {});
    assert.equal(cancelled, 1);
  });

  it("wakes a waiting provider at the first showable text", async () => {
    const store = new StreamStore();
    const stream = store.start(KEY, () => {});
    assert.equal(stream.showable, false);
    const woken = stream.changed();
    store.progress(progress("   "));
    await woken;
    assert.equal(stream.showable, false, "whitespace alone is not worth showing yet");
    store.progress(progress("   x"));
    assert.equal(stream.showable, true);
    stream.answer("");
    assert.equal(stream.showable, true, "an empty final answer settles the request");
    await stream.changed();
  });

  it("keeps the report of the done notification", () => {
    const store = new StreamStore();
    const stream = store.start(KEY, () => {});
    const report = { promptTokens: 10, reusedTokens: 8, prefilledTokens: 2, restoreKind: "partial", restoredFrom: 8, generatedTokens: 3, cancelled: false, ms: { total: 12 } };
    store.progress({ ...progress("abc", true), report });
    assert.deepEqual(stream.report, report);
  });
});

describe("sanitizeCompletion", () => {
  it("keeps tabs and newlines, turns CRLF into LF, drops other control characters", () => {
    assert.equal(sanitizeCompletion("a\tb\r\nc\rd\u001ce\u0000f\u0085g\u2028h\u007fi\n"), "a\tb\ncdefghi\n");
  });

  it("leaves ordinary text alone", () => {
    const text = 'def f(x):\n    return "😀 ü" + x\n';
    assert.equal(sanitizeCompletion(text), text);
  });
});

describe("Throttle", () => {
  function fakeTimers(): Timers & { time: number; run(): void } {
    let pending: (() => void) | undefined;
    return {
      time: 0,
      now() {
        return this.time;
      },
      setTimeout(callback, ms) {
        pending = () => {
          this.time += ms;
          callback();
        };
        return 1;
      },
      clearTimeout() {
        pending = undefined;
      },
      run() {
        const callback = pending;
        pending = undefined;
        callback?.();
      },
    };
  }

  it("fires on the next turn when idle, and once per interval in a burst", () => {
    const timers = fakeTimers();
    const fired: number[] = [];
    const throttle = new Throttle(() => fired.push(timers.time), 40, timers);
    throttle.request();
    assert.deepEqual(fired, [], "never synchronously");
    timers.run();
    assert.deepEqual(fired, [0]);
    throttle.request();
    throttle.request();
    timers.run();
    assert.deepEqual(fired, [0, 40], "the burst fires once, an interval later");
    timers.time += 100;
    throttle.request();
    timers.run();
    assert.deepEqual(fired, [0, 40, 140]);
  });

  it("fires nothing after dispose", () => {
    const timers = fakeTimers();
    let fired = 0;
    const throttle = new Throttle(() => fired++, 40, timers);
    throttle.request();
    throttle.dispose();
    timers.run();
    assert.equal(fired, 0);
  });
});
