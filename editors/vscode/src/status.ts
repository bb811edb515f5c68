// What the status bar item says: server problems, `$/progress` (model load, indexing,
// refactors), the engine state from `qcn.status`, and the last completion's report. Pure.

import type { RequestReport, ServerStatus } from "./protocol";

export type Severity = "ok" | "busy" | "warning" | "error";

export interface StatusView {
  text: string;
  tooltip: string;
  severity: Severity;
}

interface ProgressEntry {
  title: string;
  message?: string;
  percentage?: number;
}

const ICONS: Record<Severity, string> = {
  ok: "$(sparkle)",
  busy: "$(sync~spin)",
  warning: "$(warning)",
  error: "$(error)",
};

function count(n: number): string {
  return n.toLocaleString("en-US");
}

function shortTitle(title: string): string {
  return title.replace(/^qcn(-lsp)?: /, "");
}

/** The engine state of `qcn.status` as a short label and severity. */
function engineLabel(state: string): [string, Severity] {
  if (state === "ready") {
    return ["ready", "ok"];
  }
  if (state.startsWith("model still loading")) {
    return ["loading model", "busy"];
  }
  if (state.startsWith("not started")) {
    return ["starting", "busy"];
  }
  if (state.startsWith("no model configured")) {
    return ["no model", "warning"];
  }
  if (state.startsWith("model failed")) {
    return ["model failed to load", "error"];
  }
  return [state.split(":")[0], "warning"];
}

export function describeReport(report: RequestReport): string {
  const ms = report.ms;
  const parts = [
    `${Math.round(ms.total ?? 0)} ms total`,
    ms.first_token !== undefined ? `first token ${Math.round(ms.first_token)} ms` : undefined,
    `prompt ${count(report.promptTokens)} tokens: ${count(report.reusedTokens)} reused, ` +
      `${count(report.prefilledTokens)} prefilled (restore: ${report.restoreKind})`,
    `${count(report.generatedTokens)} generated${report.cancelled ? ", cancelled" : ""}`,
  ];
  return parts.filter((part) => part !== undefined).join("; ");
}

export class StatusModel {
  private problem: string | undefined;
  private engine = "not started (waiting for the client's initialized)";
  private engineDetail = "";
  private index = "";
  private report: RequestReport | undefined;
  private readonly progress = new Map<string, ProgressEntry>();

  /** A problem of the extension itself (no server, server stopped); cleared by `undefined`. */
  setProblem(problem: string | undefined): void {
    this.problem = problem;
  }

  applyStatus(status: ServerStatus): void {
    this.engine = status.engine.state;
    const model = status.engine.model ? status.engine.model.split(/[\\/]/).pop() : undefined;
    this.engineDetail = [model, status.engine.nCtx ? `${count(status.engine.nCtx)} ctx` : undefined]
      .filter(Boolean)
      .join(", ");
    this.index = status.index.error ? `${status.index.state} (${status.index.error})` : status.index.state;
    if (status.lastRequest) {
      this.report = status.lastRequest;
    }
  }

  completionDone(report: RequestReport): void {
    this.report = report;
  }

  progressBegin(token: string, title: string, message?: string, percentage?: number): void {
    this.progress.set(token, { title, message, percentage });
  }

  progressReport(token: string, message?: string, percentage?: number): void {
    const entry = this.progress.get(token);
    if (entry !== undefined) {
      entry.message = message ?? entry.message;
      entry.percentage = percentage ?? entry.percentage;
    }
  }

  progressEnd(token: string): void {
    this.progress.delete(token);
  }

  clearProgress(): void {
    this.progress.clear();
  }

  view(): StatusView {
    const lines: string[] = [];
    if (this.problem) {
      lines.push(this.problem);
    }
    const [label, engineSeverity] = engineLabel(this.engine);
    lines.push(`Engine: ${this.engine}${this.engineDetail ? ` (${this.engineDetail})` : ""}`);
    if (this.index) {
      lines.push(`Index: ${this.index}`);
    }
    const running = [...this.progress.values()];
    for (const entry of running) {
      lines.push(`${entry.title}${entry.message ? `: ${entry.message}` : ""}`);
    }
    if (this.report) {
      lines.push(`Last completion: ${describeReport(this.report)}`);
    }
    lines.push("Click for details.");
    const tooltip = lines.join("\n");

    let text: string;
    let severity: Severity;
    if (this.problem) {
      [text, severity] = ["qcn: server not running", "error"];
    } else if (running.length > 0) {
      const latest = running[running.length - 1];
      const amount = latest.percentage !== undefined ? ` ${Math.round(latest.percentage)}%` : "";
      [text, severity] = [`qcn: ${shortTitle(latest.title)}${amount}`, "busy"];
    } else if (engineSeverity !== "ok") {
      [text, severity] = [`qcn: ${label}`, engineSeverity];
    } else if (this.report) {
      const ms = Math.round(this.report.ms.total ?? 0);
      text = `qcn ${ms} ms · ${count(this.report.reusedTokens)} reused · ${count(this.report.prefilledTokens)} prefilled`;
      severity = "ok";
    } else {
      [text, severity] = ["qcn: ready", "ok"];
    }
    return { text: `${ICONS[severity]} ${text}`, tooltip, severity };
  }
}
