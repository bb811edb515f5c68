// The server's settings as VS Code settings `qcn.<key>` (package.json is the one list), mapped
// to the nested object the server reads from initializationOptions and workspace/configuration.

import * as path from "path";

export const SECTION = "qcn";

/** Settings of the extension itself: never sent to the server (it would warn about them). */
export const EXTENSION_KEYS: readonly string[] = [
  "serverPath",
  "serverArgs",
  "trace.server",
  "popupCompletions",
];

interface Manifest {
  contributes?: { configuration?: { properties?: Record<string, unknown> } };
}

/** The server's keys (`model.path`, ...) among the manifest's `qcn.*` settings. */
export function serverKeys(manifest: Manifest): string[] {
  const properties = manifest.contributes?.configuration?.properties ?? {};
  return Object.keys(properties)
    .filter((name) => name.startsWith(`${SECTION}.`))
    .map((name) => name.slice(SECTION.length + 1))
    .filter((key) => !EXTENSION_KEYS.includes(key));
}

export interface Environment {
  env: Record<string, string | undefined>;
  home: string;
}

// Settings whose server default depends on the environment: the VS Code default (null or "")
// stands for it and is resolved here as the server resolves it, so that clearing a setting
// restores the server's default instead of keeping the last value sent.
function resolveDefault(key: string, value: unknown, environment: Environment): unknown {
  if (key === "model.path" && (value === null || value === undefined || value === "")) {
    return environment.env.QCN_MODEL || null;
  }
  if (key === "cache.dir" && (value === null || value === undefined || value === "")) {
    const base = environment.env.XDG_CACHE_HOME || path.join(environment.home, ".cache");
    return path.join(base, "qcn-lsp");
  }
  return value;
}

/** `{model: {path: ...}, context: {budgetTokens: ...}, ...}` from `read("model.path")` etc. */
export function serverSettings(
  keys: readonly string[],
  read: (key: string) => unknown,
  environment: Environment,
): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of keys) {
    const value = resolveDefault(key, read(key), environment);
    if (value === undefined) {
      continue;
    }
    const parts = key.split(".");
    let node = settings;
    for (const part of parts.slice(0, -1)) {
      const child = node[part];
      node = (typeof child === "object" && child !== null ? child : (node[part] = {})) as Record<
        string,
        unknown
      >;
    }
    node[parts[parts.length - 1]] = value;
  }
  return settings;
}
