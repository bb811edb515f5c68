// Which qcn-lsp to start: `qcn.serverPath`, else `qcn-lsp` on PATH, else the workspace's
// virtual environment. Pure: the file system is asked through `Lookup`.

import * as path from "path";

export interface Lookup {
  isExecutable(file: string): boolean;
  /** The directories of PATH. */
  pathDirs: readonly string[];
  /** Workspace folders (file system paths), the first one first. */
  folders: readonly string[];
  home: string;
  windows: boolean;
}

export type Resolution =
  | { ok: true; command: string; args: string[]; source: string }
  | { ok: false; message: string };

const SERVER_NAME = "qcn-lsp";

function venvServer(folder: string, windows: boolean): string {
  return windows
    ? path.join(folder, ".venv", "Scripts", `${SERVER_NAME}.exe`)
    : path.join(folder, ".venv", "bin", SERVER_NAME);
}

function onPath(name: string, lookup: Lookup): string | undefined {
  const names = lookup.windows ? [`${name}.exe`, `${name}.cmd`, name] : [name];
  for (const dir of lookup.pathDirs) {
    for (const candidate of names) {
      const file = path.join(dir, candidate);
      if (dir && lookup.isExecutable(file)) {
        return file;
      }
    }
  }
  return undefined;
}

function expand(configured: string, lookup: Lookup): string {
  let file = configured.replace(/\$\{workspaceFolder\}/g, lookup.folders[0] ?? "");
  if (file === "~" || file.startsWith("~/")) {
    file = path.join(lookup.home, file.slice(1));
  }
  if (!path.isAbsolute(file) && lookup.folders.length > 0) {
    file = path.join(lookup.folders[0], file);
  }
  return file;
}

export function resolveServer(configured: string, args: readonly string[], lookup: Lookup): Resolution {
  const wanted = configured.trim();
  if (wanted) {
    // A bare name is looked up on PATH, like a shell would.
    const found = /[\\/]/.test(wanted) || wanted.startsWith("~") ? expand(wanted, lookup) : onPath(wanted, lookup);
    if (found !== undefined && lookup.isExecutable(found)) {
      return { ok: true, command: found, args: [...args], source: "qcn.serverPath" };
    }
    return {
      ok: false,
      message:
        `qcn-lsp: qcn.serverPath is "${wanted}", which is not an executable file` +
        (found && found !== wanted ? ` (${found})` : "") +
        ". Point it at the qcn-lsp program (for example .venv/bin/qcn-lsp of a qcn-lsp checkout), " +
        "or clear it to use qcn-lsp from PATH.",
    };
  }
  const fromPath = onPath(SERVER_NAME, lookup);
  if (fromPath !== undefined) {
    return { ok: true, command: fromPath, args: [...args], source: "PATH" };
  }
  for (const folder of lookup.folders) {
    const candidate = venvServer(folder, lookup.windows);
    if (lookup.isExecutable(candidate)) {
      return { ok: true, command: candidate, args: [...args], source: "workspace .venv" };
    }
  }
  return {
    ok: false,
    message:
      "qcn-lsp: the language server was not found (not on PATH, and no .venv/bin/qcn-lsp in the " +
      "workspace). Install it (`make .venv/.installed` in a qcn-lsp checkout, or " +
      "`pip install -e .` there) and set qcn.serverPath to the installed qcn-lsp, then run " +
      "“qcn: Restart Server”.",
  };
}
