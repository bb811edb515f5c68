// Drives real VS Code (code-server in headless chromium) through the extension as a user
// would: ghost text while typing, Ctrl+Right and Tab, a code action, qcn.refactor, a setting
// changed in the Settings editor. Started by tests/editors/test_vscode.py, which owns the
// processes; this script only connects to the browser, writes `result.json` (and
// screenshots) into the results folder and exits. Every wait is bounded.
//
//   node out/e2e/run.js CONFIG.json

import { promises as fs, readFileSync } from "fs";
import * as path from "path";
import puppeteer, { Browser, ElementHandle, KeyInput, Page } from "puppeteer-core";

interface Config {
  browserURL: string;
  /** code-server's --user-data-dir: the extension's log is under logs/, settings in User/. */
  userData: string;
  workbenchURL: string;
  /** The workspace file to type into, relative to `workspace`. */
  file: string;
  workspace: string;
  results: string;
  /** Lines to type at the end of the file, one per attempt, until ghost text appears. */
  attempts: string[];
  /** 1-based line of the code action's selection, and line:column of the refactored symbol. */
  actionLine: number;
  refactorAt: string;
  refactorInstruction: string;
}

interface GhostEvent {
  ms: number;
  text: string;
}

interface Step {
  name: string;
  ms: number;
  ok: boolean;
  detail?: unknown;
}

const result: {
  ok: boolean;
  steps: Step[];
  error?: string;
  notifications: string[];
  consoleErrors: string[];
  ghost?: unknown;
  accept?: unknown;
  codeAction?: unknown;
  refactor?: unknown;
  settingChange?: unknown;
} = { ok: false, steps: [], notifications: [], consoleErrors: [] };

// Messages that end an action (the extension's outcomes and the server's own), not the
// progress notification's title.
const OUTCOME = /^qcn-lsp: |^qcn: .*(nothing was applied|offered no edit|changed |cancelled|failed)/;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function step<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  console.log(`-- ${name}`);
  try {
    const detail = await work();
    result.steps.push({ name, ms: Date.now() - started, ok: true, detail });
    return detail;
  } catch (error) {
    result.steps.push({ name, ms: Date.now() - started, ok: false, detail: String(error) });
    throw error;
  }
}

/** Polls `probe` until it returns something other than undefined, or fails after `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, every = 100): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await sleep(every);
  }
}

async function chord(page: Page, modifier: KeyInput, key: KeyInput): Promise<void> {
  await page.keyboard.down(modifier);
  await page.keyboard.press(key);
  await page.keyboard.up(modifier);
}

async function statusText(page: Page): Promise<string> {
  return page.$$eval(".statusbar-item", (items) =>
    items.map((item) => item.textContent ?? "").find((text) => text.includes("qcn")) ?? "",
  );
}

/** Records every change of the ghost text and every notification toast, in the page. */
async function installRecorders(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __ghost: { ms: number; text: string }[]; __toasts: string[] };
    w.__ghost = [];
    w.__toasts = [];
    // The cursor line's part (decorations in the view lines), then the lines below it
    // (a view zone of `.ghost-text` lines), as the user reads them.
    const ghostText = () => {
      const inline = [...document.querySelectorAll(".monaco-editor .view-lines .ghost-text-decoration")];
      const below = [...document.querySelectorAll(".monaco-editor .view-zones .view-line")].filter((line) =>
        line.querySelector(".ghost-text"),
      );
      const text = (elements: Element[]) => elements.map((element) => element.textContent ?? "").join("");
      return [text(inline), ...below.map((line) => line.textContent ?? "")].join("\n").replace(/\u00a0/g, " ");
    };
    let last = "";
    new MutationObserver(() => {
      const text = ghostText();
      if (text !== last) {
        last = text;
        w.__ghost.push({ ms: performance.now(), text });
      }
      for (const toast of document.querySelectorAll(".notification-list-item-message")) {
        const message = toast.textContent ?? "";
        if (message && !w.__toasts.includes(message)) {
          w.__toasts.push(message);
        }
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

async function ghostEvents(page: Page): Promise<GhostEvent[]> {
  return page.evaluate(() => (window as unknown as { __ghost: GhostEvent[] }).__ghost.slice());
}

async function toasts(page: Page): Promise<string[]> {
  const seen = await page.evaluate(() => (window as unknown as { __toasts: string[] }).__toasts.slice());
  result.notifications = seen;
  return seen;
}

async function now(page: Page): Promise<number> {
  return page.evaluate(() => performance.now());
}

/**
 * Clicks the first `rows` element whose text `matches`, and returns that text. Lists re-render
 * while they fill (a clicked row can be gone by then): it looks again until `ms` run out.
 */
async function clickRow(page: Page, rows: string, what: string, matches: (text: string) => boolean, ms = 10_000): Promise<string> {
  return until(what, ms, async () => {
    for (const row of await page.$$(rows)) {
      try {
        const text = await row.evaluate((element) => element.textContent ?? "");
        if (matches(text)) {
          await row.click();
          return text;
        }
      } catch {
        return undefined; // detached: the list changed, look again
      }
    }
    return undefined;
  });
}

/** Runs the command palette entry whose label is exactly `label` (others may match too). */
async function runCommand(page: Page, label: string): Promise<void> {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true, timeout: 10_000 });
  await page.keyboard.type(label, { delay: 10 });
  await clickRow(page, ".quick-input-list .monaco-list-row .label-name", `the command palette entry "${label}"`, (text) => text === label);
}

async function goTo(page: Page, where: string): Promise<void> {
  await chord(page, "Control", "g");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true, timeout: 10_000 });
  await page.keyboard.type(where, { delay: 10 });
  await page.keyboard.press("Enter");
  await sleep(300);
}

async function save(page: Page, file: string, before: string): Promise<string> {
  await chord(page, "Control", "s");
  return until("the saved file", 10_000, async () => {
    const text = await fs.readFile(file, "utf8");
    return text !== before ? text : undefined;
  });
}

/** The model's outcome after an action: the editor got dirty (an edit), or a qcn message. */
async function outcome(page: Page, since: string[], ms: number): Promise<{ kind: "edit" | "message"; text: string }> {
  return until("an edit or a qcn message", ms, async () => {
    const dirty = await page.$(".tabs-container .tab.active.dirty");
    if (dirty) {
      return { kind: "edit" as const, text: "" };
    }
    const fresh = (await toasts(page)).filter((text) => !since.includes(text) && OUTCOME.test(text));
    return fresh.length > 0 ? { kind: "message" as const, text: fresh.join("\n") } : undefined;
  }, 250);
}

/** The extension's log (src/inline.ts writes one line per answered completion). */
async function extensionLog(config: Config): Promise<string> {
  const logs = path.join(config.userData, "logs");
  for (const session of (await fs.readdir(logs).catch(() => [])).sort().reverse()) {
    for (const host of await fs.readdir(path.join(logs, session)).catch(() => [])) {
      const file = path.join(logs, session, host, "qcn-lsp.qcn-lsp", "qcn-lsp.log");
      const text = await fs.readFile(file, "utf8").catch(() => undefined);
      if (text !== undefined) {
        return text;
      }
    }
  }
  return "";
}

/** The final text of the completion answered at 1-based `line`:`column`, once logged. */
async function answeredAt(config: Config, line: number, column: number, after: number): Promise<string | undefined> {
  const pattern = new RegExp(`\\] completion v\\d+ ${line}:${column}: (".*") \\(\\d+ streamed updates`);
  for (const entry of (await extensionLog(config)).split("\n").slice(after)) {
    const match = pattern.exec(entry);
    if (match) {
      return JSON.parse(match[1]) as string;
    }
  }
  return undefined;
}

const withoutSpace = (text: string) => text.replace(/\s/g, "");

/**
 * After the keys that led to `text` (the buffer, cursor at its end): the ghost text, the
 * server's final answer at the cursor, and the ghost text showing all of it. Undefined when
 * the answer is empty; throws when a wait runs out.
 */
async function ghostAt(page: Page, config: Config, text: string, since: number, logLines: number) {
  const lines = text.split("\n");
  let events: GhostEvent[] = [];
  await until("ghost text", 25_000, async () => {
    events = (await ghostEvents(page)).filter((event) => event.ms > since);
    return events.some((event) => event.text.trim() !== "") ? true : undefined;
  });
  // Columns are UTF-16 code units, as JavaScript counts them and as VS Code reports them.
  const answer = await until("the server's answer", 30_000, () =>
    answeredAt(config, lines.length, lines[lines.length - 1].length + 1, logLines),
  );
  if (answer.trim() === "") {
    return undefined;
  }
  await until("the whole answer as ghost text", 10_000, async () => {
    events = (await ghostEvents(page)).filter((event) => event.ms > since);
    return withoutSpace(events[events.length - 1]?.text ?? "") === withoutSpace(answer) ? true : undefined;
  });
  return { answer, events, shown: events[events.length - 1].text };
}

async function logLength(config: Config): Promise<number> {
  return (await extensionLog(config)).split("\n").length - 1;
}

async function typeGhostText(page: Page, config: Config, file: string) {
  const original = await fs.readFile(file, "utf8");
  let typed = "";
  for (const [index, line] of config.attempts.entries()) {
    await chord(page, "Control", "End");
    await page.keyboard.press("Enter");
    const logLines = await logLength(config);
    const startedAt = await now(page);
    await page.keyboard.type(line, { delay: 60 });
    typed += `\n${line}`;
    const typedAt = await now(page);
    try {
      const ghost = await ghostAt(page, config, original + typed, typedAt, logLines);
      if (ghost !== undefined) {
        return { attempt: index + 1, line, typed, original, startedAt, typedAt, ...ghost };
      }
      console.log(`attempt ${index + 1}: the server's final answer is empty`);
    } catch (error) {
      console.log(`attempt ${index + 1}: ${String(error)}`);
    }
  }
  throw new Error(`no ghost text after ${config.attempts.length} attempts`);
}

async function screenshotEditor(page: Page, name: string, config: Config): Promise<void> {
  const editor = (await page.$(".editor-group-container")) as ElementHandle<Element> | null;
  const box = await editor?.boundingBox();
  const footer = await (await page.$(".part.statusbar"))?.boundingBox();
  if (box && footer) {
    // The editor and the status bar below it, as a user sees them.
    const clip = { x: box.x, y: box.y, width: box.width, height: footer.y + footer.height - box.y };
    await page.screenshot({ path: path.join(config.results, name), clip });
  } else {
    await page.screenshot({ path: path.join(config.results, name) });
  }
}

async function main(config: Config): Promise<void> {
  const browser: Browser = await puppeteer.connect({ browserURL: config.browserURL, protocolTimeout: 60_000 });
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") {
      result.consoleErrors.push(message.text().slice(0, 500));
    }
  });
  const file = path.join(config.workspace, config.file);
  try {
    await page.setViewport({ width: 1100, height: 620 });
    await step("workbench", async () => {
      await page.goto(config.workbenchURL, { waitUntil: "domcontentloaded", timeout: 60_000 });
      await page.waitForSelector(".monaco-workbench", { timeout: 90_000 });
      await installRecorders(page);
    });
    const ready = await step("server ready", async () => {
      const seen: string[] = [];
      await until("the qcn status item to say ready", 120_000, async () => {
        const text = (await statusText(page)).trim();
        if (text && seen[seen.length - 1] !== text) {
          seen.push(text);
        }
        return /qcn: ready|qcn \d+ ms/.test(text) ? true : undefined;
      }, 200);
      return seen;
    });
    console.log(`status: ${ready.join(" | ")}`);
    await step("open file", async () => {
      await chord(page, "Control", "p");
      await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true, timeout: 10_000 });
      await page.keyboard.type(config.file, { delay: 20 });
      await sleep(500);
      await page.keyboard.press("Enter");
      await until(`the editor tab of ${config.file}`, 15_000, async () =>
        (await page.$$eval(".tabs-container .tab.active", (tabs) => tabs.map((tab) => tab.textContent ?? ""))).some((text) =>
          text.includes(path.basename(config.file)),
        )
          ? true
          : undefined,
      );
      await page.waitForSelector(".monaco-editor.focused", { timeout: 10_000 });
    });

    const ghost = await step("ghost text", () => typeGhostText(page, config, file));
    result.ghost = ghost;
    await screenshotEditor(page, "ghost-text.png", config);

    result.accept = await step("accept a word, then the rest with Tab", async () => {
      const before = ghost.original + ghost.typed;
      // Ctrl+Right: VS Code's "accept next word"; the ghost text then shows the rest, which
      // the server should answer from the suggestion the user is typing along.
      const logLines = await logLength(config);
      const wordAt = await now(page);
      await chord(page, "Control", "ArrowRight");
      const afterWord = await save(page, file, ghost.original);
      let rest: Awaited<ReturnType<typeof ghostAt>> | undefined;
      if (afterWord !== before + ghost.answer) {
        rest = await ghostAt(page, config, afterWord, wordAt, logLines);
      }
      let after = afterWord;
      if (rest !== undefined) {
        await page.keyboard.press("Tab");
        after = await save(page, file, afterWord);
        await screenshotEditor(page, "after-tab.png", config);
      }
      return { before, afterWord, rest: rest?.answer ?? "", after };
    });

    result.codeAction = await step("code action", async () => {
      const since = await toasts(page);
      const before = await fs.readFile(file, "utf8");
      await goTo(page, String(config.actionLine));
      await page.keyboard.press("Home");
      await page.keyboard.down("Shift");
      await page.keyboard.press("End");
      await page.keyboard.up("Shift");
      await runCommand(page, "Refactor...");
      let menu: string[] = [];
      const chosen = await clickRow(page, ".action-widget .monaco-list-row", "Qwen's action in the code action menu", (text) => {
        menu.push(text);
        return text.includes("Qwen");
      }, 15_000);
      menu = [...new Set(menu)];
      const seen = await outcome(page, since, 120_000);
      const after = seen.kind === "edit" ? await save(page, file, before) : before;
      return { menu, chosen, ...seen, before, after };
    });

    result.refactor = await step("qcn.refactor", async () => {
      const since = await toasts(page);
      const before = await fs.readFile(file, "utf8");
      await goTo(page, config.refactorAt);
      await runCommand(page, "qcn: Refactor Symbol at Cursor…");
      await page.waitForSelector(".quick-input-widget .quick-input-box input", { visible: true, timeout: 10_000 });
      const prompt = await page.$eval(".quick-input-widget .quick-input-message", (message) => message.textContent ?? "");
      await page.keyboard.type(config.refactorInstruction, { delay: 10 });
      await page.keyboard.press("Enter");
      const seen = await until("a refactor outcome", 180_000, async () => {
        const preview = await page.$(".refactor-preview-view, .monaco-workbench .bulk-edit-panel");
        if (preview) {
          return { kind: "preview" as const, text: "" };
        }
        const fresh = (await toasts(page)).filter((text) => !since.includes(text) && OUTCOME.test(text));
        const dirty = await page.$(".tabs-container .tab.dirty");
        if (dirty) {
          return { kind: "edit" as const, text: fresh.join("\n") };
        }
        return fresh.length > 0 ? { kind: "message" as const, text: fresh.join("\n") } : undefined;
      }, 250);
      return { prompt, ...seen, before };
    });
    result.settingChange = await step("setting change reaches the server", async () => {
      // In the Settings editor, as a user would: the extension sends didChangeConfiguration,
      // the server pulls `qcn` and logs its effective settings.
      await runCommand(page, "Preferences: Open User Settings");
      const search = await page.waitForSelector(".settings-editor .suggest-input-container textarea, .settings-editor .search-container textarea", { visible: true, timeout: 15_000 });
      await search?.type("qcn.completion.maxTokens", { delay: 10 });
      const input = '.settings-editor input[aria-label="qcn.completion.maxTokens"]';
      // The list re-renders while the search settles: type until the box holds the value.
      await until("the setting's input box to take 33", 15_000, async () => {
        try {
          await page.focus(input);
          await chord(page, "Control", "a");
          await page.keyboard.type("33", { delay: 20 });
          return (await page.$eval(input, (box) => (box as HTMLInputElement).value)) === "33" ? true : undefined;
        } catch {
          return undefined;
        }
      }, 500);
      await page.keyboard.press("Enter");
      return until("the server's settings log line with completion.maxTokens 33", 30_000, async () =>
        (await extensionLog(config)).split("\n").find((line) => line.includes("qcn-lsp settings:") && line.includes('"completion.maxTokens": 33')),
      500);
    });
    await toasts(page);
    await page.screenshot({ path: path.join(config.results, "final.png") });
    result.ok = true;
  } catch (error) {
    result.error = error instanceof Error ? (error.stack ?? error.message) : String(error);
    await toasts(page).catch(() => undefined);
    await page.screenshot({ path: path.join(config.results, "failure.png") }).catch(() => undefined);
  } finally {
    await fs.writeFile(path.join(config.results, "result.json"), JSON.stringify(result, null, 2));
    await browser.disconnect();
  }
}

const config = JSON.parse(readFileSync(process.argv[2], "utf8")) as Config;
main(config).then(
  () => process.exit(result.ok ? 0 : 1),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
