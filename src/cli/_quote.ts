// Names in CLI messages: a name from the command line, a file or an archive
// can hold a newline or an escape sequence, which must never start a second
// line on stderr or reach the terminal raw.

/** Characters escaped in messages: C0 and C1 controls, DEL, U+2028/2029. */
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function escape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * `name` JSON-quoted, with C1 controls and line separators escaped too:
 * `quote('a\nb')` is `"a\nb"` (backslash, n), one line whatever the name.
 */
export function quote(name: string): string {
  return JSON.stringify(name).replace(UNSAFE, escape);
}

/** Whether `name` prints as itself: no controls, quotes or backslashes. */
function plain(name: string): boolean {
  return name !== "" && !/["'\\]/.test(name) && !new RegExp(UNSAFE.source).test(name);
}

/**
 * `name` bare where Proxmox's message prints it bare (`can't open file %s`),
 * JSON-quoted when it is empty or holds a quote, backslash or control character.
 */
export function shown(name: string): string {
  return plain(name) ? name : quote(name);
}

/** `'name'` where Proxmox's message has `'%s'`; JSON-quoted like {@linkcode shown}. */
export function shownQuoted(name: string): string {
  return plain(name) ? `'${name}'` : quote(name);
}

/** `text` on one line: controls and line separators escaped (the last defence). */
export function oneLine(text: string): string {
  return text.replace(UNSAFE, escape);
}
