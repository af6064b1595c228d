import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
}

const files = (dir: string) => ({ json: join(dir, 'checkpoint.json'), npy: join(dir, 'checkpoint.npy') });

/** Writes the checkpoint atomically (temp files then rename), so a kill mid-write keeps the old one. */
export function saveCheckpoint<H>(dir: string, ck: Checkpoint<H>): void {
  mkdirSync(dir, { recursive: true });
  const f = files(dir);
  writeNpy(f.npy + '.tmp', { data: ck.v, shape: ck.shape });
  const { v: _v, ...meta } = ck;
  writeFileSync(f.json + '.tmp', JSON.stringify(meta, null, 1));
  renameSync(f.npy + '.tmp', f.npy);
  renameSync(f.json + '.tmp', f.json);
}

export function hasCheckpoint(dir: string): boolean {
  const f = files(dir);
  return existsSync(f.json) && existsSync(f.npy);
}

/** Loads a checkpoint, refusing one made with other settings (they would not continue the same run). */
export function loadCheckpoint<H>(dir: string, fingerprint: Record<string, unknown>): Checkpoint<H> {
  const f = files(dir);
  if (!hasCheckpoint(dir)) throw new UsageError(`--resume: no checkpoint in ${dir}`);
  const meta = JSON.parse(readFileSync(f.json, 'utf8')) as Omit<Checkpoint<H>, 'v'>;
  for (const [k, val] of Object.entries(fingerprint)) {
    if (JSON.stringify(meta.fingerprint[k]) !== JSON.stringify(val))
      throw new UsageError(`--resume: checkpoint in ${dirname(f.json)} was made with ${k}=${JSON.stringify(meta.fingerprint[k])}, not ${JSON.stringify(val)}`);
  }
  const { data } = readNpy(f.npy);
  return { ...meta, v: data };
}
