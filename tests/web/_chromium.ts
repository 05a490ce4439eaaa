// Drives a headless Chromium through the DevTools protocol over Deno's
// built-in WebSocket (no npm driver): launch, open a page, evaluate, set a
// file input, collect the page's errors, screenshot, and clean up (the browser
// is killed and its profile directory removed).

/** The Chromium binary: $CHROMIUM, else the first of the usual names on PATH, else undefined. */
export async function findChromium(): Promise<string | undefined> {
  const env = Deno.env.get("CHROMIUM");
  const names = env ? [env] : ["chromium", "chromium-browser", "google-chrome"];
  for (const name of names) {
    try {
      const out = await new Deno.Command(name, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.success) return name;
    } catch {
      // not installed under this name
    }
  }
  return undefined;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type Listener = (params: Record<string, unknown>, sessionId?: string) => void;

/** A running browser with one DevTools connection. */
export class Chromium implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #profile: string;
  #socket: WebSocket;
  #id = 0;
  #pending = new Map<number, Pending>();
  #listeners = new Map<string, Listener[]>();

  private constructor(child: Deno.ChildProcess, profile: string, socket: WebSocket) {
    this.#child = child;
    this.#profile = profile;
    this.#socket = socket;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data as string);
      if (message.id !== undefined) {
        const pending = this.#pending.get(message.id);
        this.#pending.delete(message.id);
        if (message.error) pending?.reject(new Error(`CDP: ${message.error.message}`));
        else pending?.resolve(message.result);
      } else {
        for (const fn of this.#listeners.get(message.method) ?? []) {
          fn(message.params, message.sessionId);
        }
      }
    };
  }

  /** Launches `binary` headless with a fresh profile directory. */
  static async launch(binary: string): Promise<Chromium> {
    const profile = await Deno.makeTempDir({ prefix: "vmakit-chromium-" });
    const args = [
      "--headless=new",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-extensions",
      "--disable-background-networking",
      "--window-size=1000,800",
    ];
    // Chromium refuses to run as root with its sandbox on.
    if (Deno.uid() === 0) args.push("--no-sandbox");
    const child = new Deno.Command(binary, {
      args: [...args, "about:blank"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let text = "";
      for (let i = 0; i < 300 && !text.includes("\n"); i++) {
        text = await Deno.readTextFile(`${profile}/DevToolsActivePort`).catch(() => "");
        if (!text.includes("\n")) await new Promise((r) => setTimeout(r, 100));
      }
      const [port, path] = text.trim().split("\n");
      if (!path) throw new Error("Chromium did not write DevToolsActivePort within 30 s");
      const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`);
      await new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error("Cannot connect to Chromium's DevTools socket"));
      });
      return new Chromium(child, profile, socket);
    } catch (error) {
      child.kill("SIGKILL");
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** The browser's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends a DevTools command (to a page when `sessionId` is given). */
  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** Calls `fn` on every event named `method`. */
  on(method: string, fn: Listener): void {
    const list = this.#listeners.get(method) ?? [];
    list.push(fn);
    this.#listeners.set(method, list);
  }

  /** Opens a new tab at about:blank and attaches to it. */
  async newPage(): Promise<Page> {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId);
    await page.send("Runtime.enable");
    await page.send("Page.enable");
    await page.send("Log.enable");
    return page;
  }

  /**
   * Closes the browser (Browser.close, then SIGKILL after 5 s) and removes
   * its profile directory, retrying while its helper processes still write.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    const exited = this.#child.status.then(() => true);
    const timeout = (ms: number) =>
      new Promise<boolean>((resolve) => {
        const id = setTimeout(() => resolve(false), ms);
        exited.then(() => clearTimeout(id));
      });
    await Promise.race([this.send("Browser.close").catch(() => {}), timeout(2000)]);
    if (!(await Promise.race([exited, timeout(5000)]))) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await exited;
    }
    try {
      this.#socket.close();
    } catch {
      // already closed
    }
    for (const pending of this.#pending.values()) pending.reject(new Error("Chromium closed"));
    this.#pending.clear();
    for (let attempt = 0;; attempt++) {
      try {
        await Deno.remove(this.#profile, { recursive: true });
        return;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return;
        if (attempt >= 50) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** One tab. `errors` collects console errors, uncaught exceptions and error log entries. */
export class Page {
  readonly errors: string[] = [];
  readonly #browser: Chromium;
  readonly #session: string;

  constructor(browser: Chromium, session: string) {
    this.#browser = browser;
    this.#session = session;
    browser.on("Runtime.exceptionThrown", (p, s) => {
      if (s !== session) return;
      const details = p.exceptionDetails as {
        text: string;
        exception?: { description?: string };
      };
      this.errors.push(`exception: ${details.exception?.description ?? details.text}`);
    });
    browser.on("Runtime.consoleAPICalled", (p, s) => {
      if (s !== session || (p.type !== "error" && p.type !== "warning")) return;
      const args = p.args as { value?: unknown; description?: string }[];
      this.errors.push(`console.${p.type}: ${args.map((a) => a.value ?? a.description).join(" ")}`);
    });
    browser.on("Log.entryAdded", (p, s) => {
      const entry = p.entry as { level: string; text: string; url?: string };
      if (s !== session || entry.level !== "error") return;
      this.errors.push(`log: ${entry.text} ${entry.url ?? ""}`);
    });
  }

  // deno-lint-ignore no-explicit-any
  send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    return this.#browser.send(method, params, this.#session);
  }

  /** Navigates and waits for the load event. */
  async goto(url: string): Promise<void> {
    const loaded = new Promise<void>((resolve) => {
      this.#browser.on("Page.loadEventFired", (_p, s) => {
        if (s === this.#session) resolve();
      });
    });
    const result = await this.send("Page.navigate", { url });
    if (result.errorText) throw new Error(`Cannot load ${url}: ${result.errorText}`);
    await loaded;
  }

  /** Evaluates `expression` (awaiting a promise) and returns its JSON value; a throw rejects. */
  async eval<T = unknown>(expression: string): Promise<T> {
    const result = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    });
    if (result.exceptionDetails) {
      const d = result.exceptionDetails;
      throw new Error(`In the page: ${d.exception?.description ?? d.text}`);
    }
    return result.result.value as T;
  }

  /** Polls `expression` until it is truthy (at most `seconds`), returning its value. */
  async waitFor<T = unknown>(expression: string, seconds = 60): Promise<T> {
    const end = Date.now() + seconds * 1000;
    for (;;) {
      const value = await this.eval<T>(expression);
      if (value) return value;
      if (Date.now() > end) {
        throw new Error(`Timed out after ${seconds} s waiting for ${expression}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Gives the `<input type=file>` matched by `selector` the files at `paths`. */
  async setFiles(selector: string, paths: string[]): Promise<void> {
    const { root } = await this.send("DOM.getDocument", { depth: 0 });
    const { nodeId } = await this.send("DOM.querySelector", { nodeId: root.nodeId, selector });
    if (!nodeId) throw new Error(`No element matches ${selector}`);
    await this.send("DOM.setFileInputFiles", { nodeId, files: paths });
  }

  /** A PNG of the page at `width` CSS pixels (full height). */
  async screenshot(width: number, height: number): Promise<Uint8Array> {
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }
}

/** Resident set size in KiB of each renderer process under `pid` (Linux /proc), by pid. */
export function rendererRss(pid: number): Map<number, number> {
  const parent = new Map<number, number>();
  const rss = new Map<number, number>();
  const renderers = new Set<number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const id = Number(entry.name);
      parent.set(id, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      const status = Deno.readTextFileSync(`/proc/${entry.name}/status`);
      rss.set(id, Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0));
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes("--type=renderer")) {
        renderers.add(id);
      }
    } catch {
      // the process ended meanwhile
    }
  }
  const under = (id: number): boolean => {
    for (let p = parent.get(id); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === pid) return true;
    }
    return false;
  };
  return new Map([...renderers].filter(under).map((id) => [id, rss.get(id) ?? 0]));
}
