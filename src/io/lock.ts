import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { makeFolder, onPath } from './atomic.js';

/**
 * One writer per run folder: two runs into one output folder would overwrite each other's files and both
 * exit 0. The lock is a file created exclusively (O_EXCL) holding the writer's pid; a lock whose
 * process is gone (killed) is taken over.
 */

const LOCK = '.uap.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

/** Takes the lock of `dir` (created if needed) for this process; returns the release function. */
export function lockRunDir(dir: string, what: string): () => void {
  onPath(dir, 'create the folder', () => makeFolder(dir));
  const file = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        return onPath(file, 'create the lock', () => {
          throw e;
        });
      let holder: { pid?: number; command?: string } = {};
      try {
        holder = JSON.parse(readFileSync(file, 'utf8')) as { pid?: number; command?: string };
      } catch {
        // unreadable: written by a process killed mid-write; stale
      }
      if (holder.pid && holder.pid !== process.pid && alive(holder.pid))
        throw new UsageError(
          `{out} ${dir}: another uap run (pid ${holder.pid}${holder.command ? `, ${holder.command}` : ''}) is writing there; wait for it to finish or pick another {out}`,
        );
      rmSync(file, { force: true }); // stale: its process is gone
      continue;
    }
    writeSync(fd, JSON.stringify({ pid: process.pid, command: what, started: new Date().toISOString() }));
    closeSync(fd);
    const release = () => {
      try {
        if ((JSON.parse(readFileSync(file, 'utf8')) as { pid?: number }).pid === process.pid) rmSync(file, { force: true });
      } catch {
        // already gone
      }
      process.off('exit', release);
    };
    process.on('exit', release);
    return release;
  }
  throw new UsageError(`{out} ${dir}: cannot take its lock (${file}); remove it if no uap run is writing there`);
}
