// Ghost text while the model writes it: one completion stream per document, keyed by the
// document version and cursor of its request. Pure logic (no VS Code): the inline provider
// serves `text` of the stream for the editor's current state and re-queries on `changed`.

import type { CompletionProgressParams, RequestReport } from "./protocol";

export interface StreamKey {
  uri: string;
  version: number;
  line: number;
  character: number;
}

export function sameKey(a: StreamKey, b: StreamKey): boolean {
  return (
    a.uri === b.uri && a.version === b.version && a.line === b.line && a.character === b.character
  );
}

// C0 controls except tab and newline (a lone carriage return included), DEL, C1 controls and
// the Unicode line/paragraph separators: none of them belongs in a buffer, and the last three
// kinds are line breaks to some tools but not to LSP, so positions after them would drift.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE_CHARACTERS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Completion text as it may enter the user's buffer. */
export function sanitizeCompletion(text: string): string {
  return text.replace(/\r\n/g, "\n").replace(UNSAFE_CHARACTERS, "");
}

export class CompletionStream {
  private streamed = "";
  private final: string | undefined;
  private waiters: Array<() => void> = [];
  report: RequestReport | undefined;
  /** Texts the server sent for this request, unfiltered, for the log. */
  readonly received: string[] = [];

  constructor(
    readonly key: StreamKey,
    private readonly cancelRequest: () => void,
  ) {}

  /** What to show now: the final text once known, else the text streamed so far. */
  get text(): string {
    return sanitizeCompletion(this.final ?? this.streamed);
  }

  get done(): boolean {
    return this.final !== undefined;
  }

  /** Worth rendering: anything but whitespace, or the final word (which may be empty). */
  get showable(): boolean {
    return this.done || this.text.trim() !== "";
  }

  /** A streamed text; returns whether what the user sees changed. */
  update(text: string): boolean {
    if (this.done) {
      return false; // the response (or done notification) already settled it
    }
    this.received.push(text);
    const before = this.text;
    this.streamed = text;
    const changed = this.text !== before;
    if (changed) {
      this.wake();
    }
    return changed;
  }

  /** The `done` notification: the final text, unless the response came first. */
  finish(text: string, report?: RequestReport): boolean {
    if (report !== undefined) {
      this.report = report;
    }
    return this.done ? false : this.settle(text);
  }

  /** The request's response: the final text (it wins over the notifications). */
  answer(text: string): boolean {
    return this.settle(text);
  }

  /** Stop the server's work for this stream (it will not be shown any more). */
  cancel(): void {
    if (!this.done) {
      this.cancelRequest();
      this.settle("");
    }
  }

  private settle(text: string): boolean {
    const before = this.text;
    this.final = text;
    this.wake();
    return this.text !== before;
  }

  /** Resolves at the next change (or at once when already done). */
  changed(): Promise<void> {
    if (this.done) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) {
      wake();
    }
  }
}

/** The one live completion stream of each document. */
export class StreamStore {
  private readonly streams = new Map<string, CompletionStream>();

  get(key: StreamKey): CompletionStream | undefined {
    const stream = this.streams.get(key.uri);
    return stream && sameKey(stream.key, key) ? stream : undefined;
  }

  /** A new stream for `key`; the document's previous one is cancelled. */
  start(key: StreamKey, cancelRequest: () => void): CompletionStream {
    this.streams.get(key.uri)?.cancel();
    const stream = new CompletionStream(key, cancelRequest);
    this.streams.set(key.uri, stream);
    return stream;
  }

  /**
   * A `qcn/completionProgress` notification: the stream it updated when it belongs to the
   * document's current request and changed what is shown; undefined when dropped (another
   * version or cursor: the user moved on) or unchanged.
   */
  progress(params: CompletionProgressParams): CompletionStream | undefined {
    const stream = this.streams.get(params.uri);
    if (
      stream === undefined ||
      params.version !== stream.key.version ||
      params.position.line !== stream.key.line ||
      params.position.character !== stream.key.character
    ) {
      return undefined;
    }
    const changed = params.done ? stream.finish(params.text, params.report) : stream.update(params.text);
    return changed ? stream : undefined;
  }

  /** The document changed: its running stream is stale. */
  documentChanged(uri: string, version: number): void {
    const stream = this.streams.get(uri);
    if (stream !== undefined && stream.key.version !== version) {
      stream.cancel();
      this.streams.delete(uri);
    }
  }

  /** The cursor moved: a running stream elsewhere is no longer wanted; a finished one stays
   * (coming back to the same spot and version shows it again without asking the model). */
  cursorMoved(uri: string, line: number, character: number): void {
    const stream = this.streams.get(uri);
    if (
      stream !== undefined &&
      !stream.done &&
      (stream.key.line !== line || stream.key.character !== character)
    ) {
      stream.cancel();
      this.streams.delete(uri);
    }
  }

  closed(uri: string): void {
    this.streams.get(uri)?.cancel();
    this.streams.delete(uri);
  }

  clear(): void {
    for (const stream of this.streams.values()) {
      stream.cancel();
    }
    this.streams.clear();
  }
}

export interface Timers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const REAL_TIMERS: Timers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Runs `fire` at most once per `intervalMs`: on the next turn when idle, else once at the end
 * of the interval (never synchronously: the caller's own promise continuations run first). */
export class Throttle {
  private last = -Infinity;
  private pending: unknown = undefined;

  constructor(
    private readonly fire: () => void,
    private readonly intervalMs: number,
    private readonly timers: Timers = REAL_TIMERS,
  ) {}

  request(): void {
    if (this.pending !== undefined) {
      return;
    }
    const wait = Math.max(0, this.last + this.intervalMs - this.timers.now());
    this.pending = this.timers.setTimeout(() => {
      this.pending = undefined;
      this.run();
    }, wait);
  }

  dispose(): void {
    if (this.pending !== undefined) {
      this.timers.clearTimeout(this.pending);
      this.pending = undefined;
    }
  }

  private run(): void {
    this.last = this.timers.now();
    this.fire();
  }
}
