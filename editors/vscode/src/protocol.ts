// What qcn-lsp adds to LSP (docs/protocol.md), as the extension reads it. No VS Code imports:
// the pure modules and their unit tests share these shapes.

export const PROGRESS_METHOD = "qcn/completionProgress";
/** Client capability under `experimental` that opts in to `qcn/completionProgress`. */
export const PROGRESS_CAPABILITY = "qcnCompletionProgress";

/** The server's `executeCommandProvider` ids; the extension owns the VS Code commands. */
export const SERVER_COMMANDS = {
  status: "qcn.status",
  rewrite: "qcn.rewrite",
  editFiles: "qcn.editFiles",
  refactor: "qcn.refactor",
} as const;

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** The engine's report of one completion (`report` of the last notification, `lastRequest`). */
export interface RequestReport {
  promptTokens: number;
  reusedTokens: number;
  prefilledTokens: number;
  restoreKind: string;
  restoredFrom: number | null;
  generatedTokens: number;
  cancelled: boolean;
  ms: Record<string, number>;
}

export interface CompletionProgressParams {
  uri: string;
  version: number | null;
  position: Position;
  /** The whole completion so far, not a delta. */
  text: string;
  done: boolean;
  report?: RequestReport;
}

/** The result of `qcn.rewrite`, `qcn.editFiles` and `qcn.refactor`. */
export interface EditCommandResult {
  applied: boolean;
  cancelled: boolean;
  files: string[];
  reason?: string | null;
}

export interface ServerStatus {
  engine: { state: string; model?: string; arch?: string; nCtx?: number; hybrid?: boolean };
  lastRequest: RequestReport | null;
  index: { state: string; error: string | null; files?: number; definitions?: number };
  settings: Record<string, unknown>;
}
