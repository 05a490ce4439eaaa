/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="esnext" />
// The page: picks an archive (input or drop), shows its header, and runs
// Verify and Extract in the engine (a Worker, or this thread where a Worker
// cannot start). Nothing leaves the machine: the archive is read from the
// `File` and the disks are written to a folder the user picks.
import { Engine, FORMATS, type Reply, type Request } from "./_engine.ts";

/** `showDirectoryPicker` (Chromium-based browsers only; not in TypeScript's DOM lib). */
type DirectoryPicker = (options: { mode: "readwrite" }) => Promise<FileSystemDirectoryHandle>;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

const ui = {
  input: $<HTMLInputElement>("file"),
  drop: $("drop"),
  archive: $("archive"),
  name: $("archive-name"),
  summary: $("summary"),
  configs: $("configs"),
  devices: $("devices"),
  format: $<HTMLSelectElement>("format"),
  withConfigs: $<HTMLInputElement>("with-configs"),
  verify: $<HTMLButtonElement>("verify"),
  extract: $<HTMLButtonElement>("extract"),
  cancel: $<HTMLButtonElement>("cancel"),
  progress: $<HTMLProgressElement>("progress"),
  status: $("status"),
  error: $("error"),
  saveNote: $("save-note"),
  downloads: $("downloads"),
};

/** The test hook: `?target=opfs` extracts into the origin-private file system without asking. */
const forceOpfs = new URLSearchParams(location.search).get("target") === "opfs";
const picker = (globalThis as unknown as { showDirectoryPicker?: DirectoryPicker })
  .showDirectoryPicker;
/** The page's own storage, writable as a stream (Safari has only sync access handles there). */
const hasOpfs = typeof navigator.storage?.getDirectory === "function" &&
  typeof globalThis.FileSystemFileHandle?.prototype.createWritable === "function";

let file: File | undefined;
let job: Request["type"] | undefined;
let cancelBeforeStart = false;
const engine = startEngine();

// ---- Engine ----------------------------------------------------------------

interface Port {
  send(request: Request, transfer?: Transferable[]): void;
}

/** A Worker running the engine, or the engine on this thread when no Worker starts. */
function startEngine(): Port {
  let worker: Worker | undefined;
  let last: Request | undefined;
  let answered = false;
  let local: Engine | undefined;
  const fallback = () => {
    worker?.terminate();
    worker = undefined;
    local ??= new Engine(onReply);
    if (last !== undefined) void local.handle(last);
  };
  try {
    worker = new Worker("worker.js");
    worker.onmessage = (event: MessageEvent<Reply>) => {
      answered = true;
      onReply(event.data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      // A worker that never answered failed to load (file://): run here instead.
      if (!answered) fallback();
      else onReply({ type: "error", message: event.message || "The worker failed" });
    };
  } catch {
    worker = undefined;
  }
  return {
    send(request) {
      if (request.type !== "cancel") last = request;
      if (worker !== undefined) worker.postMessage(request);
      else {
        local ??= new Engine(onReply);
        void local.handle(request);
      }
    },
  };
}

// ---- Replies ---------------------------------------------------------------

function onReply(reply: Reply): void {
  switch (reply.type) {
    case "header":
      showHeader(reply);
      setState("ready");
      status("Header read. Choose what to do.");
      break;
    case "progress":
      ui.progress.max = reply.total || 1;
      ui.progress.value = reply.done;
      ui.progress.textContent = `${percent(reply.done, reply.total)}%`;
      status(`${verb()}: ${percent(reply.done, reply.total)}%`);
      break;
    case "done": {
      const what = reply.job === "verify" ? "Verified" : "Extracted";
      const archive = mib(reply.archiveBytes);
      status(
        `${what}: the archive is sound. ${reply.clusters} clusters, ${mib(reply.sparseBytes)} ` +
          `sparse; ${archive} of archive in ${reply.seconds.toFixed(1)} s ` +
          `(${(reply.rate / 2 ** 20).toFixed(0)} MiB/s).`,
      );
      if (reply.job === "extract") void listFiles(reply.files);
      setState("done");
      break;
    }
    case "error":
      fail(reply.message);
      break;
    case "cancelled":
      status("Cancelled. Nothing was saved.");
      setState("cancelled");
      break;
  }
  if (reply.type !== "progress") job = undefined;
}

const verb = () => (job === "extract" ? "Extracting" : "Verifying");

function setState(state: string): void {
  document.body.dataset.state = state;
  const busy = state === "busy" || state === "opening";
  const loaded = ui.archive.hidden === false;
  ui.verify.disabled = busy || !loaded;
  ui.extract.disabled = busy || !loaded || !canSave();
  ui.cancel.disabled = !busy;
  ui.input.disabled = busy;
  ui.format.disabled = busy;
}

function status(text: string): void {
  ui.status.textContent = text;
}

function fail(message: string): void {
  const li = document.createElement("li");
  li.textContent = message;
  ui.error.append(li);
  ui.error.hidden = false;
  status("Failed.");
  setState("error");
}

// ---- Header ----------------------------------------------------------------

function showHeader(h: Extract<Reply, { type: "header" }>): void {
  ui.archive.hidden = false;
  ui.name.textContent = file?.name ?? "";
  ui.summary.replaceChildren(
    ...row("Created", new Date(h.ctime).toLocaleString() + ` (${h.ctime})`),
    ...row("Compression", h.compression),
    ...row("File size", bytes(file?.size ?? 0)),
    ...row("UUID", h.uuid),
  );
  ui.configs.replaceChildren(
    ...h.configs.map((c) => {
      const li = document.createElement("li");
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${c.name} (${bytes(c.size)})`;
      const pre = document.createElement("pre");
      pre.textContent = c.text;
      pre.tabIndex = 0;
      details.append(summary, pre);
      li.append(details);
      return li;
    }),
  );
  if (h.configs.length === 0) ui.configs.append(item("No config files"));
  ui.devices.replaceChildren(
    ...h.devices.map((d) => {
      const tr = document.createElement("tr");
      const pick = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.value = d.name;
      box.id = `device-${d.id}`;
      const label = document.createElement("label");
      label.htmlFor = box.id;
      label.textContent = d.name;
      pick.append(box, " ", label);
      const size = document.createElement("td");
      size.textContent = bytes(d.size);
      size.dataset.bytes = String(d.size);
      tr.append(pick, size);
      return tr;
    }),
  );
}

function row(term: string, value: string): HTMLElement[] {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function item(text: string): HTMLLIElement {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

// ---- Saving ----------------------------------------------------------------

function canSave(): boolean {
  return forceOpfs || picker !== undefined || hasOpfs;
}

/** Where extracted files go: the picked folder, or the private one (then download links). */
async function target(): Promise<{ dir: FileSystemDirectoryHandle; replace: boolean }> {
  if (!forceOpfs && picker !== undefined) {
    return { dir: await picker({ mode: "readwrite" }), replace: false };
  }
  // The page's own storage keeps only the last extraction: it is the browser's disk space.
  const root = await navigator.storage.getDirectory();
  await root.removeEntry("extracted", { recursive: true }).catch(() => {});
  return { dir: await root.getDirectoryHandle("extracted", { create: true }), replace: true };
}

/** Download links for the private folder's files (not needed for a picked folder). */
async function listFiles(names: string[]): Promise<void> {
  clearDownloads();
  if (!forceOpfs && picker !== undefined) {
    ui.downloads.append(...names.map((n) => item(`Saved ${n}`)));
    return;
  }
  const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("extracted");
  for (const name of names) {
    const f = await (await dir.getFileHandle(name)).getFile();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(f);
    a.download = name;
    a.textContent = `Download ${name} (${f.size.toLocaleString("en-US")} bytes)`;
    const li = document.createElement("li");
    li.append(a);
    ui.downloads.append(li);
  }
}

/** Empties the download list, releasing its object URLs. */
function clearDownloads(): void {
  for (const a of ui.downloads.querySelectorAll("a")) URL.revokeObjectURL(a.href);
  ui.downloads.replaceChildren();
}

// ---- Actions ---------------------------------------------------------------

function open(chosen: File): void {
  file = chosen;
  ui.archive.hidden = true;
  ui.error.replaceChildren();
  ui.error.hidden = true;
  clearDownloads();
  ui.progress.value = 0;
  status(`Reading the header of ${chosen.name}…`);
  setState("opening");
  job = "open";
  engine.send({ type: "open", file: chosen });
}

function begin(request: Request): void {
  if (cancelBeforeStart) {
    cancelBeforeStart = false;
    onReply({ type: "cancelled" });
    return;
  }
  ui.error.replaceChildren();
  ui.error.hidden = true;
  clearDownloads();
  ui.progress.value = 0;
  job = request.type;
  setState("busy");
  status(`${verb()}…`);
  engine.send(request);
}

ui.input.addEventListener("change", () => {
  const chosen = ui.input.files?.[0];
  if (chosen) open(chosen);
});

for (const type of ["dragenter", "dragover"]) {
  ui.drop.addEventListener(type, (event) => {
    event.preventDefault();
    ui.drop.classList.add("over");
  });
}
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
ui.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.drop.classList.remove("over");
  const chosen = (event as DragEvent).dataTransfer?.files[0];
  if (chosen && !ui.input.disabled) open(chosen);
});

ui.verify.addEventListener("click", () => {
  if (file) begin({ type: "verify", file });
});

ui.extract.addEventListener("click", async () => {
  if (!file) return;
  const devices = [...ui.devices.querySelectorAll<HTMLInputElement>("input:checked")]
    .map((box) => box.value);
  const before = document.body.dataset.state ?? "ready";
  setState("busy");
  let where;
  try {
    where = await target();
  } catch (error) {
    // The user closed the folder picker: nothing to do.
    if ((error as DOMException).name === "AbortError") return setState(before);
    fail((error as Error).message);
    return;
  }
  begin({
    type: "extract",
    file,
    dir: where.dir,
    devices,
    configs: ui.withConfigs.checked,
    format: ui.format.value,
    replace: where.replace,
  });
});

ui.cancel.addEventListener("click", () => {
  status("Cancelling…");
  // Between Extract and the folder being chosen, no job runs yet: stop it from starting.
  if (job === undefined) cancelBeforeStart = true;
  engine.send({ type: "cancel" });
});

// Leaving the page mid-job would stop it: the browser asks first.
addEventListener("beforeunload", (event) => {
  if (document.body.dataset.state === "busy") event.preventDefault();
});

// ---- Set-up ----------------------------------------------------------------

for (const [name, format] of Object.entries(FORMATS)) {
  const option = document.createElement("option");
  option.value = name;
  option.textContent = `${name} (.${format.ext})`;
  ui.format.append(option);
}
if (forceOpfs || picker !== undefined) {
  ui.saveNote.textContent =
    "Extract asks for a folder and writes the disks there as it reads; a file appears only once it is complete.";
} else if (hasOpfs) {
  ui.saveNote.textContent =
    "This browser cannot write to a folder you choose: Extract writes into the browser's own storage (as much as it grants this page, usually a share of the free disk space), then offers each file as a download.";
} else {
  ui.saveNote.textContent =
    "This browser can verify but not save files: use a recent Chrome, Edge or Firefox to extract.";
}
setState("empty");

// ---- Formatting ------------------------------------------------------------

function bytes(n: number): string {
  const exact = `${n.toLocaleString("en-US")} bytes`;
  return n < 1024 ? exact : `${mib(n)} (${exact})`;
}

function mib(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

function percent(done: number, total: number): number {
  return total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
}
