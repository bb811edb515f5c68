// Entry point: one Session (the server and what shows it) and the commands.

import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { Session } from "./session";

let session: Session | undefined;

export function activate(context: vscode.ExtensionContext): void {
  // vscode-languageclient 11 writes its log through a log output channel.
  const log = vscode.window.createOutputChannel("qcn-lsp", { log: true });
  session = new Session(context, log);
  context.subscriptions.push(log, session, ...registerCommands(session));
  void session.start();
}

export async function deactivate(): Promise<void> {
  await session?.stop();
  session = undefined;
}
