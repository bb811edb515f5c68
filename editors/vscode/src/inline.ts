// Ghost text: VS Code's inline completion provider, fed by the server's streamed
// `qcn/completionProgress` texts. One server request per document version and cursor; VS Code
// is asked to re-query (`editor.action.inlineSuggest.trigger`) as the text grows and gets the
// latest text of that request. Tab, Ctrl+Right (next word) and "accept next line" are VS
// Code's own inline-suggest commands.

import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { CompletionProgressParams, RequestReport } from "./protocol";
import { CompletionStream, StreamKey, StreamStore, Throttle, sanitizeCompletion } from "./stream";

const INLINE_COMPLETION_REQUEST = "textDocument/inlineCompletion";
// At most this often VS Code re-renders a growing completion.
const RETRIGGER_MS = 150;

interface InlineItem {
  insertText: string | { value: string };
}

function answerText(result: unknown): string {
  const items = Array.isArray(result) ? result : (result as { items?: unknown[] } | null)?.items;
  const first = items?.[0] as InlineItem | undefined;
  if (first === undefined) {
    return "";
  }
  return typeof first.insertText === "string" ? first.insertText : first.insertText.value;
}

function keyOf(document: vscode.TextDocument, position: vscode.Position): StreamKey {
  return {
    uri: document.uri.toString(),
    version: document.version,
    line: position.line,
    character: position.character,
  };
}

function whenCancelled(token: vscode.CancellationToken): Promise<void> {
  return new Promise((resolve) => {
    if (token.isCancellationRequested) {
      resolve();
    } else {
      token.onCancellationRequested(() => resolve());
    }
  });
}

export class GhostText implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private readonly streams = new StreamStore();
  private readonly retrigger = new Throttle(() => this.rerender(), RETRIGGER_MS);
  // What the provider last returned for each stream, and the stream that grew since.
  private readonly served = new WeakMap<CompletionStream, string>();
  private grown: CompletionStream | undefined;
  private readonly disposables: vscode.Disposable[];

  constructor(
    private readonly client: () => LanguageClient | undefined,
    private readonly log: vscode.LogOutputChannel,
    private readonly onReport: (report: RequestReport) => void,
  ) {
    this.disposables = [
      vscode.workspace.onDidChangeTextDocument((event) =>
        this.streams.documentChanged(event.document.uri.toString(), event.document.version),
      ),
      vscode.window.onDidChangeTextEditorSelection((event) => {
        const active = event.selections[0]?.active;
        if (active !== undefined) {
          this.streams.cursorMoved(event.textEditor.document.uri.toString(), active.line, active.character);
        }
      }),
      vscode.workspace.onDidCloseTextDocument((document) => this.streams.closed(document.uri.toString())),
    ];
  }

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    const client = this.client();
    if (client === undefined || !client.isRunning() || document.uri.scheme !== "file") {
      return undefined;
    }
    const key = keyOf(document, position);
    const known = this.streams.get(key);
    this.log.trace(
      `inline request v${key.version} ${key.line + 1}:${key.character + 1}: ` +
        (known ? `serving ${known.text.length} characters${known.done ? "" : " (streaming)"}` : "asking the server"),
    );
    const stream = known ?? this.request(client, key, context);
    // VS Code cancels this call when it asks again; the server request lives on until the
    // document or the cursor moves (StreamStore), so a re-query gets the same stream.
    const cancelled = whenCancelled(token);
    while (!stream.showable && !token.isCancellationRequested) {
      await Promise.race([stream.changed(), cancelled]);
    }
    const text = stream.text;
    if (token.isCancellationRequested || text === "") {
      return undefined;
    }
    this.served.set(stream, text);
    return [new vscode.InlineCompletionItem(text, new vscode.Range(position, position))];
  }

  /** A `qcn/completionProgress` notification. */
  onProgress(params: CompletionProgressParams): void {
    if (params.done && params.report) {
      this.onReport(params.report);
    }
    const stream = this.streams.progress(params);
    if (stream !== undefined) {
      this.grown = stream;
      this.retrigger.request();
    }
  }

  /** The server went away: nothing it was writing will come. */
  reset(): void {
    this.streams.clear();
  }

  dispose(): void {
    this.retrigger.dispose();
    this.streams.clear();
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
  }

  private request(client: LanguageClient, key: StreamKey, context: vscode.InlineCompletionContext): CompletionStream {
    const cancellation = new vscode.CancellationTokenSource();
    const stream = this.streams.start(key, () => cancellation.cancel());
    const started = Date.now();
    const params = {
      textDocument: { uri: key.uri },
      position: { line: key.line, character: key.character },
      // LSP: Invoked = 1, Automatic = 2 (VS Code: Invoke = 0, Automatic = 1).
      context: { triggerKind: context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke ? 1 : 2 },
    };
    client.sendRequest(INLINE_COMPLETION_REQUEST, params, cancellation.token).then(
      (result) => {
        if (stream.answer(answerText(result))) {
          this.grown = stream;
          this.retrigger.request();
        }
        this.logAnswer(stream, answerText(result), Date.now() - started);
      },
      (error: unknown) => {
        stream.answer("");
        if (!cancellation.token.isCancellationRequested) {
          this.log.warn(`completion at ${key.line + 1}:${key.character + 1} failed: ${String(error)}`);
        }
      },
    );
    return stream;
  }

  private logAnswer(stream: CompletionStream, raw: string, ms: number): void {
    const { key } = stream;
    this.log.info(
      `completion v${key.version} ${key.line + 1}:${key.character + 1}: ${JSON.stringify(stream.text)} ` +
        `(${stream.received.length} streamed updates, ${ms} ms)`,
    );
    if (sanitizeCompletion(raw) !== raw.replace(/\r\n/g, "\n")) {
      this.log.warn(`the server's completion had control characters, removed from the ghost text: ${JSON.stringify(raw)}`);
    }
  }

  private isOnScreen(key: StreamKey): boolean {
    const editor = vscode.window.activeTextEditor;
    const active = editor?.selection.active;
    return (
      editor !== undefined &&
      active !== undefined &&
      editor.document.uri.toString() === key.uri &&
      editor.document.version === key.version &&
      active.line === key.line &&
      active.character === key.character
    );
  }

  // VS Code 1.100 does not ask providers again for a version and cursor it already has an
  // explicit answer for (InlineCompletionsSource.fetch: UpdateRequest.satisfies), and the
  // stable API has no "completions changed" event: hiding the ghost text clears that answer,
  // so the explicit trigger that follows asks this provider, which serves the longer text.
  // Both commands are sent at once: the renderer runs them back to back, and the ghost text
  // is gone only until the provider's answer is back (about one frame on a local machine).
  private rerender(): void {
    const stream = this.grown;
    this.grown = undefined;
    if (
      stream === undefined ||
      this.streams.get(stream.key) !== stream ||
      !this.isOnScreen(stream.key) ||
      this.served.get(stream) === stream.text
    ) {
      return; // gone, elsewhere, or a waiting provider call already returned this text
    }
    void vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
    void vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
  }
}
