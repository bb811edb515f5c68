// What the user is told after a command or code action, and the memory that keeps the same
// news from being shown twice (the server may already have said it with window/showMessage).
// Pure.

import type { EditCommandResult } from "./protocol";

export type Level = "info" | "warning" | "error";

export interface Message {
  level: Level;
  text: string;
}

/** The message for an edit command's result (`what`: "refactor add", "rewrite", ...). */
export function describeOutcome(what: string, result: EditCommandResult): Message {
  const reason = result.reason?.trim();
  if (result.cancelled) {
    return { level: "info", text: `qcn: ${what} cancelled; nothing was changed.` };
  }
  if (result.applied) {
    const files = result.files.length > 0 ? result.files.join(", ") : "the document";
    return {
      level: "info",
      text: `qcn: ${what} changed ${files}.` + (reason ? ` Skipped: ${reason}` : ""),
    };
  }
  return {
    level: "warning",
    text: `qcn: ${what}: nothing was applied: ${reason || "the edit was declined"}.`,
  };
}

/** A JSON-RPC error of a request, as the user reads it. */
export function describeError(what: string, error: unknown): Message {
  const code = (error as { code?: unknown })?.code;
  const raw = error instanceof Error ? error.message : String(error);
  const text = raw.startsWith("qcn-lsp:") ? raw : `qcn: ${what} failed: ${raw}`;
  // -32803 RequestFailed: an expected condition with its reason (model loading, no edit).
  return { level: code === -32803 ? "warning" : "error", text };
}

/** Messages shown lately, to skip one that repeats what the user was just told. */
export class RecentMessages {
  private readonly shown: Array<{ text: string; at: number }> = [];

  constructor(private readonly windowMs = 10_000) {}

  note(text: string, now: number): void {
    this.forget(now);
    this.shown.push({ text, at: now });
  }

  /** Whether a message shown within the window contains `fragment`. */
  seen(fragment: string, now: number): boolean {
    this.forget(now);
    const wanted = fragment.trim();
    return wanted !== "" && this.shown.some((message) => message.text.includes(wanted));
  }

  private forget(now: number): void {
    while (this.shown.length > 0 && now - this.shown[0].at > this.windowMs) {
      this.shown.shift();
    }
  }
}
