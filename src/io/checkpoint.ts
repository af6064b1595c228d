import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { readNpy, writeNpy } from './npy.js';

/** What a run needs to continue exactly where it stopped: v after the last full pass, and its history. */
export interface Checkpoint<H = unknown> {
  /** Passes (or steps) completed. */
  completed: number;
  /** The options that shaped the run; a resume with different ones is refused. */
  fingerprint: Record<string, unknown>;
  history: H[];
  v: Float32Array;
  shape: [number, number, number];
  /** Seconds spent before this checkpoint. */
  elapsed: number;
  /** Method state besides v (e.g. optimiser moments), one array per name. */
  extra?: Record<string, Float32Array>;
}

const jsonFile = (dir: string) => join(dir, 'checkpoint.json');
const npyName = (completed: number) => `checkpoint-${completed}.npy`;

/**
 * Writes the checkpoint so that a kill at any moment leaves a consistent one: v goes to a file named
 * after its pass, then checkpoint.json (which names that file) is replaced by an atomic rename; only
 * then is the previous pass's file removed.
 */
export function saveCheckpoint<H>(dir: string, ck: Checkpoint<H>): void {
  mkdirSync(dir, { recursive: true });
  // A fresh run may find an old or damaged checkpoint here: it is replaced, not read.
  let previous: string | undefined;
  try {
    previous = existsSync(jsonFile(dir)) ? readMeta(dir).vFile : undefined;
  } catch {
    previous = undefined;
  }
  let previousExtra: string[] = [];
  try {
    previousExtra = Object.values(readMeta(dir).extraFiles ?? {});
  } catch {
    previousExtra = [];
  }
  const vFile = npyName(ck.completed);
  writeNpy(join(dir, vFile), { data: ck.v, shape: ck.shape });
  const extraFiles: Record<string, string> = {};
  for (const [name, data] of Object.entries(ck.extra ?? {})) {
    extraFiles[name] = `checkpoint-${ck.completed}-${name}.npy`;
    writeNpy(join(dir, extraFiles[name]), { data, shape: [data.length] });
  }
  const { v: _v, extra: _e, ...meta } = ck;
  writeFileSync(jsonFile(dir) + '.tmp', JSON.stringify({ ...meta, vFile, extraFiles }, null, 1));
  renameSync(jsonFile(dir) + '.tmp', jsonFile(dir));
  if (previous && previous !== vFile) rmSync(join(dir, previous), { force: true });
  for (const f of previousExtra) if (!Object.values(extraFiles).includes(f)) rmSync(join(dir, f), { force: true });
}

type Meta<H> = Omit<Checkpoint<H>, 'v' | 'extra'> & { vFile: string; extraFiles?: Record<string, string> };

function readMeta<H>(dir: string): Meta<H> {
  try {
    const meta = JSON.parse(readFileSync(jsonFile(dir), 'utf8')) as Meta<H>;
    if (typeof meta.vFile !== 'string' || typeof meta.fingerprint !== 'object' || !Array.isArray(meta.history)) throw new Error('fields missing');
    return meta;
  } catch (e) {
    throw new UsageError(`checkpoint ${jsonFile(dir)}: unreadable (${(e as Error).message}); start afresh without --resume or with another --out`);
  }
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(jsonFile(dir));
}

/** Loads a checkpoint, refusing one made with other settings (they would not continue the same run). */
export function loadCheckpoint<H>(dir: string, fingerprint: Record<string, unknown>): Checkpoint<H> {
  if (!hasCheckpoint(dir)) throw new UsageError(`--resume: no checkpoint in ${dir}`);
  const { vFile, extraFiles, ...meta } = readMeta<H>(dir);
  for (const [k, val] of Object.entries(fingerprint)) {
    if (JSON.stringify(meta.fingerprint[k]) !== JSON.stringify(val))
      throw new UsageError(`--resume: checkpoint in ${dir} was made with ${k}=${JSON.stringify(meta.fingerprint[k])}, not ${JSON.stringify(val)}`);
  }
  const { data } = readNpy(join(dir, vFile));
  const extra = Object.fromEntries(Object.entries(extraFiles ?? {}).map(([name, f]) => [name, readNpy(join(dir, f)).data]));
  return { ...meta, v: data, extra };
}
