import { withOptionNames } from './errors.js';

/** Where the library's messages go: the CLI's console, a caller's own, or nowhere. */
export interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  /** True when the log renders the {option} templates of messages itself (the CLI's, as flags). */
  templates?: boolean;
}
export const silent: Log = { info: () => {}, warn: () => {}, templates: true };

/** The caller's log, given messages with option names in place of {option} templates. */
export function namedLog(log: Log | undefined): Log {
  if (!log) return silent;
  if (log.templates) return log;
  return { info: (m) => log.info(withOptionNames(m)), warn: (m) => log.warn(withOptionNames(m)), templates: true };
}
