import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import { readLimit, type ReadKind } from './readLimits.js';

/**
 * Every file uap reads goes through here: regular files only (a FIFO would block a run for good, a
 * device such as /dev/zero behind a symlink would fill memory), and no more bytes than a cap per
 * kind of file. The caps are generous for real inputs and can be raised with UAP_MAX_<KIND>_MB.
 */

export { READ_LIMITS_MB, readLimit, type ReadKind } from './readLimits.js';

export interface BoundedRead {
  /** How messages name the file ("image", "{labels}", "model file"). */
  what: string;
  /** The kind of file, for its cap (or give `maxBytes`). */
  kind?: ReadKind;
  maxBytes?: number;
}

function capOf(o: BoundedRead): { max: number; hint: string } {
  if (o.maxBytes !== undefined) return { max: o.maxBytes, hint: '' };
  const kind = o.kind ?? 'text';
  return { max: readLimit(kind), hint: ` (raise it with UAP_MAX_${kind.toUpperCase()}_MB)` };
}

function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Throws when `st` is not a regular file of at most the cap. */
export function checkReadable(file: string, st: Stats, o: BoundedRead): void {
  if (!st.isFile()) throw new UsageError(`${o.what} ${file}: ${fileKind(st)}, expected a regular file`);
  const { max, hint } = capOf(o);
  if (st.size > max) throw new UsageError(`${o.what} ${file}: ${mib(st.size)}, more than the ${mib(max)} such a file may have${hint}`);
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${bytes} bytes`;
}

// Non-blocking open: opening a FIFO for reading would otherwise wait for a writer, forever.
const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/**
 * The bytes of a regular file of at most the cap. OS errors (ENOENT, EACCES) are thrown as they are,
 * for callers that word "not found" themselves; a FIFO, device or oversized file is a UsageError.
 */
export function readBounded(file: string, o: BoundedRead): Buffer {
  const fd = openSync(file, FLAGS);
  try {
    const st = fstatSync(fd);
    checkReadable(file, st, o);
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const n = readSync(fd, buf, got, st.size - got, got);
      if (n === 0) break; // the file shrank while read: what is there
      got += n;
    }
    return got === st.size ? buf : buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** readBounded's text. */
export function readBoundedText(file: string, o: BoundedRead): string {
  return readBounded(file, o).toString('utf8');
}

/** A JSON file read as readBoundedText reads it and parsed; one that is not JSON is a UsageError naming it. */
export function readBoundedJson(file: string, o: BoundedRead): unknown {
  try {
    return JSON.parse(readBoundedText(file, o)) as unknown;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: not valid JSON`);
  }
}

/** readBounded without blocking the event loop (images, weight shards). */
export async function readBoundedAsync(file: string, o: BoundedRead): Promise<Buffer> {
  const h = await open(file, FLAGS);
  try {
    const st = await h.stat();
    checkReadable(file, st, o);
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const { bytesRead } = await h.read(buf, got, st.size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === st.size ? buf : buf.subarray(0, got);
  } finally {
    await h.close();
  }
}
