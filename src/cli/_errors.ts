// Errors of the CLI layer and how they become one line on stderr.

/** A failure with a message for stderr (after `vma: `) and an exit status. */
export class CliError extends Error {
  /** The process exit status. */
  readonly exitCode: number;
  /** Print the message without the `vma: ` prefix (Proxmox prints some that way). */
  readonly bare: boolean;
  constructor(
    message: string,
    options: { exitCode?: number; bare?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? 1;
    this.bare = options.bare ?? false;
  }
}

/** A wrong command line: the message, the command's usage, exit status 2. */
export class UsageError extends CliError {
  /** The subcommand whose usage to show, or undefined for the general usage. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message, { exitCode: 2 });
    this.name = "UsageError";
    this.command = command;
  }
}

/** The reader of our stdout went away: end quietly with a non-zero status. */
export class BrokenPipeError extends CliError {
  constructor(cause?: unknown) {
    super("stdout closed", { exitCode: 1, cause });
    this.name = "BrokenPipeError";
  }
}

/** The process got SIGINT/SIGTERM: end with 128 + signal number. */
export class InterruptedError extends CliError {
  constructor(signal: "SIGINT" | "SIGTERM") {
    super(`interrupted by ${signal}`, { exitCode: signal === "SIGINT" ? 130 : 143 });
    this.name = "InterruptedError";
  }
}

/** strerror(3) texts of the errno codes node:fs reports. */
const ERRNO_TEXT: Record<string, string> = {
  EEXIST: "File exists",
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EIO: "Input/output error",
  EMFILE: "Too many open files",
  ENAMETOOLONG: "File name too long",
  EXDEV: "Invalid cross-device link",
  EPIPE: "Broken pipe",
  EDQUOT: "Disk quota exceeded",
  EFBIG: "File too large",
  ELOOP: "Too many levels of symbolic links",
  ENXIO: "No such device or address",
  ENODEV: "No such device",
  EBUSY: "Device or resource busy",
  ETXTBSY: "Text file busy",
  EINVAL: "Invalid argument",
  ESPIPE: "Illegal seek",
  EAGAIN: "Resource temporarily unavailable",
  EOPNOTSUPP: "Operation not supported",
};

/**
 * The strerror-like text of an OS error: Deno's "No such file or directory (os
 * error 2): open '/x'" becomes "No such file or directory"; other errors give
 * their message.
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && code in ERRNO_TEXT) return ERRNO_TEXT[code];
    const m = /^(.*?) \(os error \d+\)/.exec(error.message);
    if (m) return m[1];
    return error.message;
  }
  return String(error);
}

/** Whether `error` (or its cause chain) is a broken pipe / closed stdout. */
export function isBrokenPipe(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 8; depth++) {
    if (e instanceof BrokenPipeError) return true;
    if (e instanceof Deno.errors.BrokenPipe) return true;
    if (e instanceof Error) {
      if (/Broken pipe|os error 32\b|EPIPE/.test(e.message)) return true;
      if ((e as { code?: string }).code === "EPIPE") return true;
      e = e.cause;
    } else break;
  }
  return false;
}
