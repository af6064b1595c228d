import { existsSync, rmSync } from 'node:fs';
import { readBoundedText } from './bounded.js';
import { writeAtomic } from './atomic.js';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { readNpy, writeNpy } from './npy.js';
import type { ImageShape } from '../math/imageShape.js';

/** What a run needs to continue exactly where it stopped: v after the last full pass, and its history. */
export interface Checkpoint<H = unknown> {
  /** Passes (or steps) completed. */
  completed: number;
  /** The options that shaped the run; a resume with different ones is refused. */
  fingerprint: Record<string, unknown>;
  history: H[];
  v: Float32Array;
  shape: ImageShape;
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
  // A fresh run may find an old or damaged checkpoint here: it is replaced, not read.
  let previous: string | undefined;
  try {
    previous = existsSync(jsonFile(dir)) ? readMeta(dir).vFile : undefined;
  } catch {
    previous = undefined;
  }
  let previousExtra: string[];
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
  writeAtomic(jsonFile(dir), JSON.stringify({ ...meta, vFile, extraFiles }, null, 1));
  if (previous && previous !== vFile) rmSync(join(dir, previous), { force: true });
  for (const f of previousExtra) if (!Object.values(extraFiles).includes(f)) rmSync(join(dir, f), { force: true });
}

type Meta<H> = Omit<Checkpoint<H>, 'v' | 'extra'> & { vFile: string; extraFiles?: Record<string, string> };

/** File names a checkpoint may name: its own, in its own folder (no paths). */
const OWN_FILE = /^checkpoint-\d+(-[A-Za-z0-9]+)?\.npy$/;

/** Why a parsed checkpoint.json cannot be trusted, or undefined when every field is sound. */
function metaProblem(meta: Partial<Meta<unknown>>): string | undefined {
  if (!Number.isInteger(meta.completed) || (meta.completed as number) < 1)
    return `"completed" must be an integer >= 1, got ${JSON.stringify(meta.completed)}`;
  if (!Array.isArray(meta.history) || meta.history.length !== meta.completed)
    return `"history" must hold one entry per completed pass (${meta.completed})`;
  if (typeof meta.fingerprint !== 'object' || meta.fingerprint === null) return '"fingerprint" is missing';
  if (typeof meta.vFile !== 'string' || !OWN_FILE.test(meta.vFile))
    return `"vFile" must name a checkpoint-N.npy file in the run folder, got ${JSON.stringify(meta.vFile)}`;
  if (Object.values(meta.extraFiles ?? {}).some((f) => typeof f !== 'string' || !OWN_FILE.test(f)))
    return '"extraFiles" must name checkpoint files in the run folder';
  const shape = meta.shape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0))
    return `"shape" must be [height, width, channels], got ${JSON.stringify(shape)}`;
  if (!(typeof meta.elapsed === 'number' && meta.elapsed >= 0)) return '"elapsed" must be a number of seconds >= 0';
  return historyProblem(meta.history);
}

/** The figures a pass record holds: rates in [0, 1], the rest numbers >= 0 (the report copies them). */
const RATES = ['foolingRate', 'targetSuccess', 'attackedFoolingRate', 'keptRate', 'valFoolingRate'];
const AMOUNTS = ['normL2', 'normInf', 'updates', 'seconds'];

/** What is wrong with a checkpoint's pass history, if anything: one record per pass, in order, of figures only. */
export function historyProblem(history: unknown[]): string | undefined {
  for (const [i, h] of history.entries()) {
    const at = `"history"[${i}]`;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) return `${at} must be a pass record (an object)`;
    const r = h as Record<string, unknown>;
    if (r.pass !== i + 1) return `${at}.pass must be ${i + 1}, got ${JSON.stringify(r.pass)?.slice(0, 40)}`;
    for (const [k, v] of Object.entries(r)) {
      if (k === 'pass') continue;
      const rate = RATES.includes(k);
      if (!rate && !AMOUNTS.includes(k)) return `${at} has an unknown field ${JSON.stringify(k.slice(0, 40))}`;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (rate && v > 1))
        return `${at}.${k} must be ${rate ? 'a rate in [0, 1]' : 'a number >= 0'}, got ${JSON.stringify(v)?.slice(0, 40)}`;
    }
    if (typeof r.foolingRate !== 'number') return `${at}.foolingRate is missing`;
  }
  return undefined;
}

function readMeta<H>(dir: string): Meta<H> {
  let meta: Meta<H>;
  try {
    meta = JSON.parse(readBoundedText(jsonFile(dir), { what: 'checkpoint' })) as Meta<H>;
  } catch (e) {
    throw new UsageError(
      `checkpoint ${jsonFile(dir)}: unreadable (${(e as Error).message}); start afresh without {resume} or with another {out}`,
    );
  }
  const problem = metaProblem(meta);
  if (problem) throw new UsageError(`checkpoint ${jsonFile(dir)}: ${problem}; start afresh without {resume} or with another {out}`);
  return meta;
}

/** A checkpoint array: every value finite, `length` values when given. */
function checkedArray(dir: string, file: string, length?: number): Float32Array {
  const { data } = readNpy(join(dir, file));
  if (length !== undefined && data.length !== length)
    throw new UsageError(`checkpoint ${join(dir, file)}: holds ${data.length} values, the checkpoint says ${length}`);
  if (!data.every(Number.isFinite))
    throw new UsageError(`checkpoint ${join(dir, file)}: holds NaN or infinite values; start afresh without {resume}`);
  return data;
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(jsonFile(dir));
}

/**
 * The settings a checkpoint was made with, where they differ from `expected` (an early check before a
 * resumed run loads its images): one message, or undefined.
 */
export function fingerprintMismatch(dir: string, expected: Record<string, unknown>): string | undefined {
  if (!hasCheckpoint(dir)) return undefined;
  const { fingerprint } = readMeta(dir);
  for (const [k, val] of Object.entries(expected))
    if (k in fingerprint && JSON.stringify(fingerprint[k]) !== JSON.stringify(val))
      return `{resume}: checkpoint in ${dir} was made with ${k}=${JSON.stringify(fingerprint[k])}, not ${JSON.stringify(val)}`;
  return undefined;
}

/** A run's checkpoints in the folder `dir` (the Node host's CheckpointStore, see src/attacks/passes.ts). */
export function folderCheckpoints<H>(dir: string): {
  where: string;
  save(ck: Checkpoint<H>): void;
  load(fingerprint: Record<string, unknown>): Checkpoint<H>;
} {
  return { where: dir, save: (ck) => saveCheckpoint(dir, ck), load: (fp) => loadCheckpoint<H>(dir, fp) };
}

/** Loads a checkpoint, refusing one made with other settings (they would not continue the same run). */
export function loadCheckpoint<H>(dir: string, fingerprint: Record<string, unknown>): Checkpoint<H> {
  if (!hasCheckpoint(dir)) throw new UsageError(`{resume}: no checkpoint in ${dir}`);
  const { vFile, extraFiles, ...meta } = readMeta<H>(dir);
  for (const [k, val] of Object.entries(fingerprint)) {
    if (JSON.stringify(meta.fingerprint[k]) !== JSON.stringify(val))
      throw new UsageError(
        `{resume}: checkpoint in ${dir} was made with ${k}=${JSON.stringify(meta.fingerprint[k])}, not ${JSON.stringify(val)}`,
      );
  }
  const v = checkedArray(dir, vFile, meta.shape[0] * meta.shape[1] * meta.shape[2]);
  const extra = Object.fromEntries(Object.entries(extraFiles ?? {}).map(([name, f]) => [name, checkedArray(dir, f)]));
  return { ...meta, v, extra };
}
