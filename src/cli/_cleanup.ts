// Undo actions run on failure or on SIGINT/SIGTERM, so nothing is left under a
// final name.
import { writeStderr } from "./_stdio.ts";

type Action = () => void;

const actions = new Set<Action>();
let installed = false;
let interrupted: "SIGINT" | "SIGTERM" | undefined;

function onSignal(signal: "SIGINT" | "SIGTERM"): void {
  if (interrupted) return;
  interrupted = signal;
  runCleanup();
  writeStderr(`vma: interrupted by ${signal}\n`);
  // Exit now: pending reads and writes would only keep the process alive.
  Deno.exit(signal === "SIGINT" ? 130 : 143);
}

const handlers = {
  SIGINT: () => onSignal("SIGINT"),
  SIGTERM: () => onSignal("SIGTERM"),
};

function install(): void {
  if (installed) return;
  installed = true;
  for (const [signal, handler] of Object.entries(handlers)) {
    try {
      Deno.addSignalListener(signal as Deno.Signal, handler);
    } catch {
      // Not supported on this platform (SIGTERM on Windows).
    }
  }
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const [signal, handler] of Object.entries(handlers)) {
    try {
      Deno.removeSignalListener(signal as Deno.Signal, handler);
    } catch {
      // Never installed.
    }
  }
}

/**
 * Registers a synchronous undo action (remove a temp file, a half-written
 * directory) to run on failure or on a signal; returns its remover.
 */
export function onCleanup(action: Action): () => void {
  actions.add(action);
  install();
  return () => {
    actions.delete(action);
    if (actions.size === 0) uninstall();
  };
}

/** Runs every registered undo action, newest first, and forgets them. */
export function runCleanup(): void {
  const list = [...actions].reverse();
  actions.clear();
  for (const action of list) {
    try {
      action();
    } catch {
      // Best effort.
    }
  }
  uninstall();
}
