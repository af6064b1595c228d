import { checkBatch, imageSize, sliceImages, type Batch } from '../math/batch.js';
import type { Classifier, Differentiable } from './classifier.js';
import { vjp } from './compute.js';

/**
 * For each image n and each of its k candidate classes cand[n][j], the logit f_{cand[n][j]}(x_n)
 * (or, given `reference`, the difference f_{cand[n][j]} - f_{reference[n]}) and its gradient with
 * respect to x_n. All n*k gradients come from one vector-Jacobian call per chunk of images with k
 * cotangents per image (ONNX Runtime: one forward pass per image; TF.js: the batch tiled k times).
 * Chunks hold whole images, as many as the model's memory allows.
 */
export interface CandidateGradients {
  /** [n, k] logits of the candidate classes. */
  logits: Float32Array;
  /** [n, k, H, W, C] gradients (the scratch's memory when one is given). */
  rows: Float32Array;
}

/** How `candidateGradients` chunks and where it writes: a row budget, a reference class, reusable memory. */
export interface GradientOptions {
  /** Upper bound on rows (images x candidates) per backward pass (default and cap: what the model's runtime and memory allow). */
  maxRows?: number;
  /** Per image: a class whose logit is subtracted from every candidate's (DeepFool's f_k - f_label). */
  reference?: Int32Array;
  /** Memory for the rows, reused from call to call (see GradientScratch). */
  scratch?: GradientScratch;
}

/**
 * Memory that repeated gradient calls (DeepFool's steps) write their rows into. Why: writing to freshly
 * allocated memory pays a page fault per page, and ten candidate gradients of 8 images at 224x224 are
 * 48 MB: faulting them in costs about as much as a small model takes to compute them.
 * Rows returned through a scratch are overwritten by its next use.
 */
export interface GradientScratch {
  buffer?: ArrayBuffer | SharedArrayBuffer;
}

/**
 * Memory for `count` gradient values of `model` (shared memory on ONNX Runtime, whose workers write
 * into it): the scratch's buffer when it is big enough and of the right kind, else a new one it keeps.
 */
export function scratchRows(model: Differentiable, count: number, scratch?: GradientScratch): Float32Array {
  const shared = model.runtime.sharedRows;
  const old = scratch?.buffer;
  // SharedArrayBuffer is undefined in a browser page that is not cross-origin isolated (the studio's).
  const oldShared = typeof SharedArrayBuffer !== 'undefined' && old instanceof SharedArrayBuffer;
  const buffer =
    old && old.byteLength >= count * 4 && oldShared === shared
      ? old
      : shared
        ? new SharedArrayBuffer(count * 4)
        : new ArrayBuffer(count * 4);
  if (scratch) scratch.buffer = buffer;
  return new Float32Array(buffer, 0, count);
}

/** Cotangents [n, k, numClasses]: +1 on cand[i, j], -1 on reference[i]. */
function selection(cand: Int32Array, n: number, k: number, numClasses: number, reference?: Int32Array): Float32Array {
  const dy = new Float32Array(n * k * numClasses);
  cand.forEach((cls, r) => {
    dy[r * numClasses + cls] += 1;
    if (reference) dy[r * numClasses + reference[Math.floor(r / k)]] -= 1;
  });
  return dy;
}

/** The selected logits (differences) [n, k] from all logits [n, numClasses]: what `selection` differentiates. */
function picked(logits: Float32Array, cand: Int32Array, k: number, numClasses: number, reference?: Int32Array): Float32Array {
  return Float32Array.from(cand, (cls, r) => {
    const i = Math.floor(r / k);
    return logits[i * numClasses + cls] - (reference ? logits[i * numClasses + reference[i]] : 0);
  });
}

/**
 * For each image n and each of its k candidate classes cand[n, k], the selected logit (difference)
 * and its input gradient, chunked to the runtime's row budget (see CandidateGradients).
 */
export async function candidateGradients(
  model: Differentiable,
  x: Batch,
  cand: Int32Array,
  k: number,
  opts: GradientOptions = {},
): Promise<CandidateGradients> {
  checkBatch(x, model.inputShape, 'candidateGradients');
  const n = x.n;
  const size = imageSize(x.shape);
  const K = model.numClasses;
  const budget = model.runtime.maxRows;
  const maxRows = Math.max(1, Math.min(opts.maxRows ?? budget, budget));
  const logits = new Float32Array(n * k);
  // Shared memory: ONNX Runtime's workers write every chunk's rows straight into place.
  const rows = scratchRows(model, n * k * size, opts.scratch);
  /** Images first..first+count-1, their candidates j0..j0+kj-1: rows contiguous in `rows`. */
  const run = async (first: number, count: number, j0: number, kj: number) => {
    const cls = Int32Array.from({ length: count * kj }, (_, r) => cand[(first + Math.floor(r / kj)) * k + j0 + (r % kj)]);
    const ref = opts.reference?.subarray(first, first + count);
    const out = rows.subarray((first * k + j0) * size, (first * k + j0 + count * kj) * size);
    const r = await vjp(model, sliceImages(x, first, count), selection(cls, count, kj, K, ref), kj, out);
    picked(r.logits, cls, kj, K, ref).forEach((v, t) => (logits[(first + Math.floor(t / kj)) * k + j0 + (t % kj)] = v));
  };
  const chunks: Parameters<typeof run>[] = [];
  if (k <= maxRows) {
    // Whole images per chunk (their k rows share one forward pass), as many as the row budget allows.
    const per = Math.floor(maxRows / k);
    for (let first = 0; first < n; first += per) chunks.push([first, Math.min(per, n - first), 0, k]);
  } else {
    // More candidates than the budget: one image at a time, its candidates in chunks.
    for (let i = 0; i < n; i++) for (let j0 = 0; j0 < k; j0 += maxRows) chunks.push([i, 1, j0, Math.min(maxRows, k - j0)]);
  }
  // All chunks at once: the runtime's workers queue their runs and never wait for the main thread.
  await Promise.all(chunks.map((a) => run(...a)));
  return { logits, rows };
}

/**
 * `candidateGradients` under its 0.1 name (it now takes a `Batch`, not a tensor, and returns plain rows).
 * @deprecated use `candidateGradients`; this name goes at 1.0.
 */
export const candidateGradientRows = candidateGradients;

/**
 * The naive reference: one backward pass per candidate class (what other toolkits do). Same results
 * as `candidateGradients`; kept for the benchmark and the equality test.
 */
export async function candidateGradientsLoop(
  model: Classifier,
  x: Batch,
  cand: Int32Array,
  k: number,
  reference?: Int32Array,
): Promise<CandidateGradients> {
  const n = x.n;
  const size = imageSize(x.shape);
  const K = model.numClasses;
  const logits = new Float32Array(n * k);
  const rows = new Float32Array(n * k * size);
  for (let j = 0; j < k; j++) {
    const classes = Int32Array.from({ length: n }, (_, i) => cand[i * k + j]);
    const r = await vjp(model, x, selection(classes, n, 1, K, reference));
    picked(r.logits, classes, 1, K, reference).forEach((v, i) => (logits[i * k + j] = v));
    for (let i = 0; i < n; i++) rows.set(r.dx.subarray(i * size, (i + 1) * size), (i * k + j) * size);
  }
  return { logits, rows };
}
