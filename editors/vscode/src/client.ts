// The vscode-languageclient client for qcn-lsp, minus the features the extension does itself.

import * as vscode from "vscode";
import {
  ClientCapabilities,
  DynamicFeature,
  FeatureState,
  LanguageClient,
  LanguageClientOptions,
  Middleware,
  ServerOptions,
  StaticFeature,
} from "vscode-languageclient/node";
import { PROGRESS_CAPABILITY } from "./protocol";

// vscode-languageclient would register the server's executeCommandProvider ids as VS Code
// commands (the extension owns qcn.refactor & co., with their input boxes) and a second
// inline completion provider (the extension's streams); `textDocument/completion` popups are
// dropped unless the user asks for them (ghost text already shows the same text, and the two
// requests would share one generation).
const EXECUTE_COMMAND = "workspace/executeCommand";
const INLINE_COMPLETION = "textDocument/inlineCompletion";
const COMPLETION = "textDocument/completion";

function clientClass(dropped: ReadonlySet<string>): typeof LanguageClient {
  return class QcnLanguageClient extends LanguageClient {
    // Called from the base constructor for every built-in feature.
    override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
      const method = (feature as Partial<DynamicFeature<unknown>>).registrationType?.method;
      if (method !== undefined && dropped.has(method)) {
        return;
      }
      super.registerFeature(feature);
    }
  };
}

/** Opts in to `qcn/completionProgress` through the experimental client capability. */
class CompletionProgressOptIn implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.experimental = {
      ...((capabilities.experimental as object | undefined) ?? {}),
      [PROGRESS_CAPABILITY]: true,
    };
  }
  initialize(): void {}
  getState(): FeatureState {
    return { kind: "static" };
  }
  clear(): void {}
}

export interface ClientSetup {
  command: string;
  args: string[];
  cwd: string | undefined;
  popupCompletions: boolean;
  initializationOptions: Record<string, unknown>;
  outputChannel: vscode.LogOutputChannel;
  middleware: Middleware;
}

export function createClient(setup: ClientSetup): LanguageClient {
  // No `transport`: stdio then, without the `--stdio` argument vscode-languageclient would add
  // for TransportKind.stdio (qcn-lsp serves stdio by default and refuses unknown arguments).
  const serverOptions: ServerOptions = {
    command: setup.command,
    args: setup.args,
    options: { cwd: setup.cwd, env: process.env },
  };
  const clientOptions: LanguageClientOptions = {
    // Every file: the model completes any language; the server skips what it cannot use.
    documentSelector: [{ scheme: "file" }],
    initializationOptions: setup.initializationOptions,
    outputChannel: setup.outputChannel,
    middleware: setup.middleware,
  };
  const dropped = new Set([EXECUTE_COMMAND, INLINE_COMPLETION]);
  if (!setup.popupCompletions) {
    dropped.add(COMPLETION);
  }
  const Client = clientClass(dropped);
  const client = new Client("qcn", "qcn-lsp", serverOptions, clientOptions);
  client.registerFeature(new CompletionProgressOptIn());
  return client;
}
