// One running qcn-lsp: starts the user's server with the current settings, answers
// workspace/configuration, forwards setting changes, feeds the status bar and tells the user
// what happened.

import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as vscode from "vscode";
import {
  CodeAction,
  ExecuteCommandRequest,
  LanguageClient,
  Middleware,
  ShowMessageNotification,
  ShowMessageParams,
  MessageType,
  State,
  WorkDoneProgressCancelNotification,
} from "vscode-languageclient/node";
import { createClient } from "./client";
import { GhostText } from "./inline";
import { Message, RecentMessages, describeError } from "./messages";
import { CompletionProgressParams, PROGRESS_METHOD, SERVER_COMMANDS, ServerStatus } from "./protocol";
import { resolveServer } from "./serverCommand";
import { EXTENSION_KEYS, SECTION, serverKeys, serverSettings } from "./settings";
import { StatusModel } from "./status";

// While the engine is not ready and no progress says why, ask `qcn.status` this often.
const STATUS_POLL_MS = 2_000;
// Titles of the server's progress for edit commands (docs/protocol.md): cancelled with
// window/workDoneProgress/cancel, which stops the model within a token.
const EDIT_PROGRESS = /^qcn: (refactor|edit files)/;

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export class Session implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly status = new StatusModel();
  private readonly statusItem: vscode.StatusBarItem;
  private readonly recent = new RecentMessages();
  private readonly keys: string[];
  private readonly ghost: GhostText;
  private readonly editProgress = new Set<string>();
  private readonly progressListeners = new Set<(message: string) => void>();
  private poll: ReturnType<typeof setTimeout> | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    context: vscode.ExtensionContext,
    readonly log: vscode.LogOutputChannel,
  ) {
    this.keys = serverKeys(context.extension.packageJSON);
    this.statusItem = vscode.window.createStatusBarItem("qcn.status", vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = "qcn-lsp";
    this.statusItem.command = "qcn.showStatus";
    this.statusItem.show();
    this.ghost = new GhostText(
      () => this.client,
      log,
      (report) => {
        this.status.completionDone(report);
        this.render();
      },
    );
    this.disposables.push(
      this.statusItem,
      this.ghost,
      vscode.languages.registerInlineCompletionItemProvider({ scheme: "file" }, this.ghost),
      vscode.workspace.onDidChangeConfiguration((event) => this.configurationChanged(event)),
    );
    this.render();
  }

  /** The running client, or undefined (not started, not found, stopped). */
  get running(): LanguageClient | undefined {
    return this.client?.isRunning() ? this.client : undefined;
  }

  async start(): Promise<void> {
    const folders = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
    const config = vscode.workspace.getConfiguration(SECTION);
    const resolved = resolveServer(config.get<string>("serverPath", ""), config.get<string[]>("serverArgs", ["--log-level", "WARNING"]), {
      isExecutable,
      pathDirs: (process.env.PATH ?? "").split(path.delimiter),
      folders,
      home: os.homedir(),
      windows: process.platform === "win32",
    });
    if (!resolved.ok) {
      this.status.setProblem(resolved.message);
      this.render();
      this.log.error(resolved.message);
      void vscode.window.showErrorMessage(resolved.message, "Open Settings").then((choice) => {
        if (choice) {
          void vscode.commands.executeCommand("workbench.action.openSettings", "qcn.serverPath");
        }
      });
      return;
    }
    this.status.setProblem(undefined);
    this.log.info(`starting ${resolved.command} ${resolved.args.join(" ")} (from ${resolved.source})`);
    const client = createClient({
      command: resolved.command,
      args: resolved.args,
      cwd: folders[0],
      popupCompletions: config.get<boolean>("popupCompletions", false),
      initializationOptions: this.serverSettings(),
      outputChannel: this.log,
      middleware: this.middleware(),
    });
    client.onNotification(PROGRESS_METHOD, (params: CompletionProgressParams) => this.ghost.onProgress(params));
    // Replaces vscode-languageclient's own handler, so that a reason the server already
    // showed is not shown again with a command's result.
    client.onNotification(ShowMessageNotification.type, (params: ShowMessageParams) => this.showServerMessage(params));
    client.onDidChangeState((event) => {
      if (event.newState === State.Stopped) {
        this.ghost.reset();
        this.status.clearProgress();
        if (this.client === client) {
          this.status.setProblem("qcn-lsp stopped: see the qcn-lsp output, or run “qcn: Restart Server”");
        }
      } else if (event.newState === State.Running) {
        this.status.setProblem(undefined);
      }
      this.render();
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      this.status.setProblem(`qcn-lsp did not start: ${String(error)}`);
      this.render();
      return;
    }
    await this.refreshStatus();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.ghost.reset();
    this.status.clearProgress();
    if (client !== undefined) {
      try {
        await client.stop(5_000);
      } catch (error) {
        this.log.warn(`stopping qcn-lsp: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** `workspace/executeCommand` on the server; throws its JSON-RPC error. */
  async execute<T>(command: string, args: unknown[], token?: vscode.CancellationToken): Promise<T> {
    const client = this.running;
    if (client === undefined) {
      throw new Error("the qcn-lsp server is not running (see the qcn-lsp output, or run “qcn: Restart Server”)");
    }
    return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }, token)) as T;
  }

  /** Stops the model in the server's running edit commands (they answer `cancelled`). */
  cancelEdits(): void {
    for (const token of this.editProgress) {
      void this.client?.sendNotification(WorkDoneProgressCancelNotification.type, { token });
    }
  }

  /** Listen to the messages of the server's edit progress ("file 1 of 3: app.py"). */
  onEditProgress(listener: (message: string) => void): vscode.Disposable {
    this.progressListeners.add(listener);
    return new vscode.Disposable(() => this.progressListeners.delete(listener));
  }

  async serverStatus(): Promise<ServerStatus> {
    const status = await this.execute<ServerStatus>(SERVER_COMMANDS.status, []);
    this.status.applyStatus(status);
    this.render();
    return status;
  }

  show(message: Message): void {
    this.recent.note(message.text, Date.now());
    const log = message.level === "info" ? this.log.info : message.level === "warning" ? this.log.warn : this.log.error;
    log.call(this.log, message.text);
    const show =
      message.level === "info"
        ? vscode.window.showInformationMessage
        : message.level === "warning"
          ? vscode.window.showWarningMessage
          : vscode.window.showErrorMessage;
    void show(message.text);
  }

  /** Shows `message` unless the server just said the same `reason`. */
  showUnlessSaid(message: Message, reason: string | null | undefined): void {
    if (reason && this.recent.seen(reason, Date.now())) {
      this.log.info(`${message.text} (already shown by the server)`);
      return;
    }
    this.show(message);
  }

  dispose(): void {
    if (this.poll !== undefined) {
      clearTimeout(this.poll);
    }
    void this.stop();
    for (const disposable of this.disposables) {
      disposable.dispose();
    }
  }

  private serverSettings(): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration(SECTION);
    return serverSettings(this.keys, (key) => config.get(key), { env: process.env, home: os.homedir() });
  }

  private middleware(): Middleware {
    return {
      workspace: {
        configuration: async (params, token, next) => {
          const answers = await next(params, token);
          if (!Array.isArray(answers)) {
            return answers;
          }
          return params.items.map((item, i) => (item.section === SECTION ? this.serverSettings() : answers[i]));
        },
      },
      // A resolve that finds no edit comes back disabled, which VS Code does not show at all.
      resolveCodeAction: async (item, token, next) => {
        try {
          const resolved = (await next(item, token)) ?? item;
          const disabled = (resolved as CodeAction).disabled;
          if (disabled !== undefined && !token.isCancellationRequested) {
            this.showUnlessSaid({ level: "warning", text: `qcn: “${item.title}” offered no edit: ${disabled.reason}` }, disabled.reason);
          }
          return resolved;
        } catch (error) {
          if (!token.isCancellationRequested) {
            this.show(describeError(item.title, error));
          }
          return item;
        }
      },
      handleWorkDoneProgress: (token, params, next) => {
        const id = String(token);
        if (params.kind === "begin") {
          this.status.progressBegin(id, params.title, params.message, params.percentage);
          if (EDIT_PROGRESS.test(params.title)) {
            this.editProgress.add(id);
          }
        } else if (params.kind === "report") {
          this.status.progressReport(id, params.message, params.percentage);
          if (this.editProgress.has(id) && params.message) {
            for (const listener of this.progressListeners) {
              listener(params.message);
            }
          }
        } else {
          this.status.progressEnd(id);
          this.editProgress.delete(id);
          void this.refreshStatus();
        }
        this.render();
        next(token, params);
      },
    };
  }

  private showServerMessage(params: ShowMessageParams): void {
    const level = params.type === MessageType.Error ? "error" : params.type === MessageType.Warning ? "warning" : "info";
    this.show({ level, text: params.message });
  }

  private async configurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!event.affectsConfiguration(SECTION)) {
      return;
    }
    const restartKeys = EXTENSION_KEYS.filter((key) => key !== "trace.server");
    if (restartKeys.some((key) => event.affectsConfiguration(`${SECTION}.${key}`))) {
      this.log.info("server settings of the extension changed: restarting qcn-lsp");
      await this.restart();
      return;
    }
    // The server pulls the new values through workspace/configuration (answered above).
    await this.running?.sendNotification("workspace/didChangeConfiguration", { settings: null });
    setTimeout(() => void this.refreshStatus(), 500);
  }

  private async refreshStatus(): Promise<void> {
    if (this.poll !== undefined) {
      clearTimeout(this.poll);
      this.poll = undefined;
    }
    let state: string;
    try {
      state = (await this.serverStatus()).engine.state;
    } catch {
      return; // not running: the state listener renders that
    }
    if (state.startsWith("model still loading") || state.startsWith("not started")) {
      this.poll = setTimeout(() => void this.refreshStatus(), STATUS_POLL_MS);
    }
  }

  private render(): void {
    const view = this.status.view();
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
    this.statusItem.backgroundColor =
      view.severity === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : view.severity === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }
}
