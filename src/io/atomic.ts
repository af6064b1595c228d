import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * Every output file is written whole or not at all: to a temporary file beside it, then renamed over
 * it (rename is atomic within a folder). A full disk or a kill leaves the previous file, never a
 * truncated one, and an OS error on the user's path is a one-line error naming it.
 */

/** Errors of the file system that the user's path or machine causes (not bugs). */
const OS_ERRORS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the device',
  EROFS: 'read-only file system',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'is a folder, not a file',
  ENOENT: 'no such file or folder',
  EEXIST: 'already exists',
  EDQUOT: 'disk quota exceeded',
  ENAMETOOLONG: 'name too long',
  EMFILE: 'too many open files',
  EBUSY: 'busy',
};

/** The UsageError for an OS error on `path`, or undefined when `e` is not one. */
export function osError(e: unknown, path: string, doing: string): UsageError | undefined {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code && OS_ERRORS[code] ? new UsageError(`${path}: cannot ${doing} (${OS_ERRORS[code]}, ${code})`) : undefined;
}

/** Runs a file-system action on `path`, turning OS errors into one-line errors naming the path. */
export function onPath<T>(path: string, doing: string, act: () => T): T {
  try {
    return act();
  } catch (e) {
    throw osError(e, path, doing) ?? e;
  }
}

/**
 * Creates `dir` and its missing parents, one level at a time. Node's own recursive mkdir never returns
 * under some kernel folders (it loops on /proc/self/x); this meets the same OS error once.
 */
export function makeFolder(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse())
    try {
      mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
}

let counter = 0;
/** A temporary name beside `file` (same folder, so the final rename is atomic). */
export const tempBeside = (file: string): string => join(dirname(file), `.${basename(file)}.${process.pid}.${counter++}.tmp`);

/** Writes `data` to `file` atomically, creating its folder. */
export function writeAtomic(file: string, data: string | Uint8Array): void {
  onPath(dirname(file), 'create the folder', () => makeFolder(dirname(file)));
  const tmp = tempBeside(file);
  try {
    onPath(file, 'write', () => writeFileSync(tmp, data));
    onPath(file, 'write', () => renameSync(tmp, file));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
