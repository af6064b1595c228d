import { existsSync, realpathSync } from 'node:fs';
import { sep } from 'node:path';
import { homedir } from 'node:os';
import { UsageError, printable } from '../errors.js';

/** What a worker may read (its folders, by real path) and what it says of a refusal (no paths of this machine, no stack). */

/** The real path of `path` when it lies inside one of `folders`, else a refusal naming it (not the folders: they are this machine's). */
export function inside(path: string, folders: string[], what: string): string {
  // Real paths of the folders as they are now (uap's cache may be made after the worker starts).
  const roots = folders.map((r) => (existsSync(r) ? realpathSync(r) : r));
  // One message whether the path is missing or outside: a job cannot probe what exists on the worker.
  const refused = new UsageError(
    `${what} ${path}: not among the files this worker may read (its operator adds folders with uap worker --root)`,
  );
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw refused;
  }
  if (!roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep))) throw refused;
  return real;
}

/**
 * A message as a refusal stored in Redis says it: one printable line, at most 500 characters, with
 * the folders of absolute paths left out (they describe this machine, not the job).
 */
export function scrubbed(message: string, folders: string[] = []): string {
  let line = message.split('\n')[0];
  // This machine's folders by name first (they may hold spaces), longest first; then any absolute path's folders.
  for (const f of [...folders, process.cwd(), homedir()].filter((f) => f.length > 1).sort((a, b) => b.length - a.length))
    line = line.split(f).join('...');
  line = printable(line).replace(/(^|[^\w.-])\/(?:[^\s/'"()<>[\],:]+\/)+/g, '$1.../');
  return line.length > 500 ? `${line.slice(0, 497)}...` : line;
}

/** An error for the queue: its scrubbed message and no stack (BullMQ stores a job's stack traces). */
export function forQueue(e: unknown, folders: string[]): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  err.message = scrubbed(err.message, folders);
  err.stack = '';
  return err;
}
