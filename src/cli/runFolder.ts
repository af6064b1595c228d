import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';

/**
 * Where a command writes when --out is not given: a new folder runs/<command>-<date>-<time>, so a
 * second run never replaces a finished one; with --resume, the newest such folder (the run that was
 * interrupted). The folder is said on the first line of the run.
 */
export function defaultRunFolder(command: string, resume: boolean, now = new Date()): string {
  if (resume) {
    const newest = (existsSync('runs') ? readdirSync('runs') : [])
      .filter((d) => d.startsWith(`${command}-`) && statSync(join('runs', d)).isDirectory())
      .sort()
      .pop();
    if (!newest) throw new UsageError(`{resume}: no earlier run of uap ${command} under runs/ to resume; name its folder with {out}`);
    return join('runs', newest);
  }
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  const base = join('runs', `${command}-${stamp}`);
  let dir = base;
  for (let k = 2; existsSync(dir); k++) dir = `${base}-${k}`;
  return dir;
}

export const OUT_DEFAULT_HELP = 'default: a new runs/COMMAND-DATE-TIME; with --resume, the newest one';
