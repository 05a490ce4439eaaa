// Undo actions run on failure or on SIGINT/SIGTERM/SIGHUP (a closed terminal
// or ssh session), so nothing is left under a final name.
import { writeStderr } from "./_stdio.ts";

type Action = () => void;

const actions = new Set<Action>();
let installed = false;
type Stop = "SIGINT" | "SIGTERM" | "SIGHUP";

/** The exit status for each signal: 128 + its number, as a shell reports it. */
const STATUS: Record<Stop, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

let interrupted: Stop | undefined;

function onSignal(signal: Stop): void {
  if (interrupted) return;
  interrupted = signal;
  runCleanup();
  writeStderr(`vma: interrupted by ${signal}\n`);
  // Exit now: pending reads and writes would only keep the process alive.
  Deno.exit(STATUS[signal]);
}

const handlers = {
  SIGINT: () => onSignal("SIGINT"),
  SIGTERM: () => onSignal("SIGTERM"),
  SIGHUP: () => onSignal("SIGHUP"),
};

function install(): void {
  if (installed) return;
  installed = true;
  for (const [signal, handler] of Object.entries(handlers)) {
    try {
      Deno.addSignalListener(signal as Deno.Signal, handler);
    } catch {
      // Not supported on this platform (SIGTERM and SIGHUP on Windows).
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
