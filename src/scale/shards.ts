import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import type { Classifier } from '../classifier/classifier.js';
import type { CardOverrides } from '../import/load.js';
import type { ImageItem, TarMember } from '../data/source.js';
import type { Norm } from '../math/lp.js';
import { modelSha256 } from '../run/provenance.js';
import type { SgdLossOptions } from '../attacks/sgd.js';
import type { AttackSettings, Method } from '../attacks/methods.js';

/**
 * The unit of distributed work: one range of a listed image set, scored with v and noise draws by a
 * `uap worker`. Shards are plain data, idempotent (the same shard gives the same result wherever it
 * runs) and carry fingerprints of the model and of their images, which the worker checks.
 */

/** An image as a shard names it: relative to the set's folder where it lies inside it. */
export interface ShardItem {
  path: string;
  label?: number;
  member?: TarMember;
}

/** The shape of jobs and results: a worker refuses a job of another (an older or newer uap on the queue). */
export const SHARD_PROTOCOL = 2;

export interface ScoreShard {
  /** SHARD_PROTOCOL of the coordinator, and its uap version (said in a refusal). */
  protocol: number;
  uap: string;
  /** The model as the user named it: a bundled name the worker loads by name, else only a name for messages. */
  model: { spec: string; card?: CardOverrides };
  /** sha256 of the model's files: how the worker finds the model among those its operator allows. */
  modelFiles?: string;
  /** sha256 of the model's files and of what the worker must agree on (name, input size, classes). */
  modelPrint: string;
  /** The image set as the user named it (null: the model's default set of `role`). */
  data: string | null;
  role: 'data' | 'val';
  items: ShardItem[];
  /** sha256 of the shard's images: names, labels, byte sizes. */
  dataPrint: string;
  /** sha256 of each perturbation (float32, HWC, pixels), stored in Redis under perturbationKey(sha). */
  vs: string[];
  radii: { norm: Norm; xi: number }[];
  draws: number;
  batchSize: number;
  strict: boolean;
  /** Also the rank of each image's true label (uap accuracy). */
  ranks?: boolean;
}

/** One gradient shard of an SGD-UAP step: its images of X, their clean labels, v (by hash), the minibatch size and the loss. */
export interface GradJob extends Pick<
  ScoreShard,
  'protocol' | 'uap' | 'model' | 'modelFiles' | 'modelPrint' | 'data' | 'role' | 'items' | 'dataPrint'
> {
  v: string;
  labels: number[];
  n: number;
  loss: SgdLossOptions;
}

/** One whole crafting run on a worker (a point of a size sweep): its X (the images, in order), the method and its settings. */
export interface CraftJob extends Pick<
  ScoreShard,
  'protocol' | 'uap' | 'model' | 'modelFiles' | 'modelPrint' | 'data' | 'role' | 'items' | 'dataPrint' | 'strict'
> {
  method: Method;
  options: AttackSettings;
}

/** What a crafting job gives back. */
export interface Crafted {
  v: string;
  foolingRate: number;
  passes: number;
  seconds: number;
}

/** Float32 values as base64 (a job's result is JSON; numbers in text would be three times larger). */
export function toBase64(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

export function fromBase64(s: string): Float32Array {
  const b = Buffer.from(s, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * Image ranges of `n` listed images, `shardSize` at a time rounded up to whole batches: every shard
 * starts on a batch boundary, so its forward passes see exactly the batches of the local run.
 */
export function planShards(n: number, shardSize: number, batchSize: number): { start: number; end: number }[] {
  const size = Math.max(batchSize, Math.ceil(shardSize / batchSize) * batchSize);
  const out: { start: number; end: number }[] = [];
  for (let start = 0; start < n; start += size) out.push({ start, end: Math.min(n, start + size) });
  return out;
}

/** The shard's names of items listed under `dir`: relative inside it, absolute outside. */
export function shardItems(items: ImageItem[], dir: string): ShardItem[] {
  return items.map((i) => {
    const rel = relative(dir, i.path);
    const path = rel.startsWith('..') || isAbsolute(rel) ? resolve(i.path) : rel;
    return { path, ...(i.label !== undefined ? { label: i.label } : {}), ...(i.member ? { member: i.member } : {}) };
  });
}

/** Resolves a shard's item names against this machine's folder for the set. */
export function localItems(items: ShardItem[], dir: string): ImageItem[] {
  return items.map((i) => ({ ...i, path: resolve(dir, i.path) }));
}

/** sha256 of a shard's images as found on this machine: names, labels, tar members, byte sizes (-1: missing). */
export function dataPrint(items: ShardItem[], dir: string): string {
  const h = createHash('sha256');
  for (const i of items) {
    let size = -1;
    try {
      size = statSync(resolve(dir, i.path)).size;
    } catch {
      // a missing file: the worker's print differs, and it refuses the shard
    }
    h.update(`${i.path}\t${i.label ?? ''}\t${i.member ? `${i.member.name}@${i.member.offset}+${i.member.size}` : ''}\t${size}\n`);
  }
  return h.digest('hex');
}

/**
 * sha256 of a loaded model's files (`files`: how a worker finds it among those allowed) and of the files
 * with its shape (`print`: two machines agree on it only with the same model). The files are hashed once.
 */
export async function modelPrints(model: Classifier): Promise<{ files?: string; print: string }> {
  const files = (await modelSha256(model.file)) ?? undefined;
  const print = createHash('sha256')
    .update(
      JSON.stringify({
        files: files ?? 'no file',
        name: model.name,
        inputShape: model.inputShape,
        numClasses: model.numClasses,
        preprocess: model.preprocess ?? null,
      }),
    )
    .digest('hex');
  return { files, print };
}

/** modelPrints' print alone. */
export async function modelPrint(model: Classifier): Promise<string> {
  return (await modelPrints(model)).print;
}

/** Where a perturbation waits in Redis for the workers. */
export function perturbationKey(sha: string): string {
  return `uap:v:${sha}`;
}

export function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
