/**
 * Messages name options as templates, `{maxPasses}`: a library user reads the option name
 * (`maxPasses`), the CLI shows the flag (`--max-passes`). Every option's flag is its name in kebab case.
 */
const OPTION = /\{([a-z][a-zA-Z0-9]*)\}/g;

/** The template with option names, for library users. */
export function withOptionNames(template: string): string {
  return template.replace(OPTION, '$1');
}

/** The template with CLI flags. */
export function withFlags(template: string): string {
  return template.replace(OPTION, (_, name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
}

/**
 * An error caused by what the user passed (an option, a file, a card). The CLI prints it on one line,
 * naming flags, and exits with code 2; anything else is a bug and keeps its stack trace.
 */
export class UsageError extends Error {
  override name = 'UsageError';
  /** The message with {option} templates (see withFlags). */
  readonly template: string;
  constructor(template: string) {
    super(withOptionNames(template));
    this.template = template;
  }
}

/** Thrown when a run is stopped through its AbortSignal; the last checkpoint stays valid. */
export class AbortedError extends UsageError {
  override name = 'AbortedError';
}

/**
 * `s` with terminal control characters (and newlines) written as \xNN escapes: file names and queue
 * fields that reach a message must not move the cursor, recolour the terminal or break the one line.
 */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
