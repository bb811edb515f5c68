// The extension's commands. `qcn.refactor`, `qcn.editFiles` and `qcn.rewrite` are also the
// server's command ids: called with the server's argument object (a code action's command, a
// keybinding, another extension) they forward it as is; called plainly they ask for it.

import * as vscode from "vscode";
import { describeError, describeOutcome } from "./messages";
import { EditCommandResult, SERVER_COMMANDS } from "./protocol";
import type { Session } from "./session";
import { describeReport } from "./status";

const MAX_PICKED_FILES = 2_000;
const IDENTIFIER = /[A-Za-z_][A-Za-z0-9_]*/;

function isArgumentObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !(value instanceof vscode.Uri) && "instruction" in value;
}

function lspPosition(position: vscode.Position): { line: number; character: number } {
  return { line: position.line, character: position.character };
}

function activeEditor(what: string): vscode.TextEditor | undefined {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    void vscode.window.showWarningMessage(`qcn: ${what}: open a file first.`);
  }
  return editor;
}

async function askInstruction(prompt: string, placeHolder: string): Promise<string | undefined> {
  const instruction = await vscode.window.showInputBox({
    title: "qcn",
    prompt,
    placeHolder,
    ignoreFocusOut: true,
    validateInput: (value) => (value.trim() ? undefined : "Say what should change."),
  });
  return instruction?.trim() || undefined;
}

/** Runs an edit command with a cancellable notification and tells the user its outcome. */
async function runEdit(session: Session, what: string, command: string, argument: Record<string, unknown>): Promise<void> {
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `qcn: ${what}`, cancellable: true },
    async (progress, token) => {
      const request = new vscode.CancellationTokenSource();
      const subscriptions = [
        session.onEditProgress((message) => progress.report({ message })),
        token.onCancellationRequested(() => {
          // Refactors and multi-file edits stop through their progress (answering
          // `cancelled`); a rewrite has none and is cancelled as a request.
          session.cancelEdits();
          if (command === SERVER_COMMANDS.rewrite) {
            request.cancel();
          }
        }),
      ];
      try {
        const result = await session.execute<EditCommandResult>(command, [argument], request.token);
        session.showUnlessSaid(describeOutcome(what, result), result.applied ? undefined : result.reason);
      } catch (error) {
        if (!request.token.isCancellationRequested) {
          session.show(describeError(what, error));
        }
      } finally {
        subscriptions.forEach((subscription) => subscription.dispose());
        request.dispose();
      }
    },
  );
}

async function refactor(session: Session, argument?: unknown): Promise<void> {
  if (isArgumentObject(argument)) {
    return runEdit(session, "refactor", SERVER_COMMANDS.refactor, argument);
  }
  const editor = activeEditor("Refactor works on the symbol at the cursor");
  if (editor === undefined) {
    return;
  }
  const cursor = editor.selection.active;
  const wordRange = editor.document.getWordRangeAtPosition(cursor, IDENTIFIER);
  if (wordRange === undefined) {
    void vscode.window.showWarningMessage("qcn: put the cursor on the symbol to refactor.");
    return;
  }
  const symbol = editor.document.getText(wordRange);
  const instruction = await askInstruction(
    `Refactor \`${symbol}\` (its definition and every use in the workspace)`,
    "e.g. rename it to total and update the callers",
  );
  if (instruction === undefined) {
    return;
  }
  await runEdit(session, `refactor ${symbol}`, SERVER_COMMANDS.refactor, {
    instruction,
    uri: editor.document.uri.toString(),
    position: lspPosition(wordRange.start),
  });
}

async function editFiles(session: Session, argument?: unknown): Promise<void> {
  if (isArgumentObject(argument)) {
    return runEdit(session, "edit files", SERVER_COMMANDS.editFiles, argument);
  }
  const instruction = await askInstruction("Edit files: what should change?", "e.g. add type hints to every function");
  if (instruction === undefined) {
    return;
  }
  const active = vscode.window.activeTextEditor?.document.uri.toString();
  const files = await vscode.workspace.findFiles("**/*", undefined, MAX_PICKED_FILES);
  const items = files
    .map((uri) => ({
      label: vscode.workspace.asRelativePath(uri),
      picked: uri.toString() === active,
      uri,
    }))
    .sort((a, b) => Number(b.picked) - Number(a.picked) || a.label.localeCompare(b.label));
  const picked = await vscode.window.showQuickPick(items, {
    title: "qcn: files the model may edit",
    canPickMany: true,
    ignoreFocusOut: true,
  });
  if (picked === undefined || picked.length === 0) {
    return;
  }
  await runEdit(session, "edit files", SERVER_COMMANDS.editFiles, {
    instruction,
    uris: picked.map((item) => item.uri.toString()),
  });
}

async function rewrite(session: Session, argument?: unknown): Promise<void> {
  if (isArgumentObject(argument)) {
    return runEdit(session, "rewrite", SERVER_COMMANDS.rewrite, argument);
  }
  const editor = activeEditor("Rewrite works on the selection");
  if (editor === undefined) {
    return;
  }
  const selection = editor.selection;
  // An empty selection rewrites the cursor's line (the server rewrites whole lines anyway).
  const range = selection.isEmpty ? editor.document.lineAt(selection.active.line).range : selection;
  const instruction = await askInstruction("Rewrite the selected lines: how?", "e.g. handle the empty list");
  if (instruction === undefined) {
    return;
  }
  await runEdit(session, "rewrite", SERVER_COMMANDS.rewrite, {
    uri: editor.document.uri.toString(),
    range: { start: lspPosition(range.start), end: lspPosition(range.end) },
    instruction,
  });
}

async function showStatus(session: Session): Promise<void> {
  try {
    const status = await session.serverStatus();
    const summary = [
      `qcn-lsp engine: ${status.engine.state}`,
      `index: ${status.index.state}`,
      status.lastRequest ? `last completion: ${describeReport(status.lastRequest)}` : undefined,
    ]
      .filter(Boolean)
      .join(". ");
    const choice = await vscode.window.showInformationMessage(summary, "Show Details", "Show Log");
    if (choice === "Show Details") {
      const document = await vscode.workspace.openTextDocument({
        language: "json",
        content: JSON.stringify(status, null, 2),
      });
      await vscode.window.showTextDocument(document, { preview: true });
    } else if (choice === "Show Log") {
      session.log.show(true);
    }
  } catch (error) {
    session.show(describeError("status", error));
  }
}

export function registerCommands(session: Session): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand("qcn.refactor", (argument?: unknown) => refactor(session, argument)),
    vscode.commands.registerCommand("qcn.editFiles", (argument?: unknown) => editFiles(session, argument)),
    vscode.commands.registerCommand("qcn.rewrite", (argument?: unknown) => rewrite(session, argument)),
    vscode.commands.registerCommand("qcn.showStatus", () => showStatus(session)),
    vscode.commands.registerCommand("qcn.restartServer", () => session.restart()),
  ];
}
