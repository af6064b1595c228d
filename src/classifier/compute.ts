import { checkBatch, type Batch } from '../math/batch.js';
import type { Differentiable } from './classifier.js';

/**
 * The one forward function and the one gradient function every attack and evaluation calls. They run
 * on the classifier's runtime (ONNX Runtime or TF.js); callers never know which. Batches are plain
 * arrays (math/batch.ts) in and out; what is not a batch of the model's images is refused.
 */

/** Logits [n * numClasses] of a pixel-space batch. */
export async function forwardLogits(model: Differentiable, x: Batch): Promise<Float32Array> {
  checkBatch(x, model.inputShape, 'forwardLogits');
  return model.runtime.forward(x);
}

/**
 * Logits [n * numClasses] of clip(x + v, 0, 255) for n images stored as uint8 [n, H, W, C] (a dataset's
 * bytes). ONNX Runtime takes the bytes and adds v inside its graph; TF.js builds the float batch.
 */
export async function logitsOfImages(model: Differentiable, pixels: Uint8Array, n: number, v: Float32Array | null): Promise<Float32Array> {
  return model.runtime.forwardImages(pixels, n, v);
}

/** Top-1 labels of clip(x + v, 0, 255) for n images stored as uint8 [n, H, W, C]. */
export async function predictImages(model: Differentiable, pixels: Uint8Array, n: number, v: Float32Array | null): Promise<Int32Array> {
  return argmaxRows(await logitsOfImages(model, pixels, n, v), model.numClasses);
}

/** Row-wise argmax of an [n, k] array. */
export function argmaxRows(values: Float32Array, k: number): Int32Array {
  const n = values.length / k;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (values[i * k + j] > values[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/** Top-1 labels of a pixel-space batch. */
export async function predictLabels(model: Differentiable, x: Batch): Promise<Int32Array> {
  return argmaxRows(await forwardLogits(model, x), model.numClasses);
}

/**
 * Vector-Jacobian products: logits of x [n, H, W, C] and, for each image i and each of its k
 * cotangents dy[i, j] (dy: [n, k, numClasses] flat), dx[i, j] = sum_c dy[i, j, c] d logit_c(x_i) / d x_i,
 * as a plain array [n, k, H, W, C] (written into `out` when given: shared memory on a runtime with
 * `sharedRows`, so that ONNX Runtime's workers write their rows in place). ONNX Runtime runs one forward
 * pass for all k; TF.js differentiates the batch tiled k times.
 */
export async function vjp(
  model: Differentiable,
  x: Batch,
  dy: Float32Array,
  k = 1,
  out?: Float32Array,
): Promise<{ logits: Float32Array; dx: Float32Array }> {
  checkBatch(x, model.inputShape, 'vjp');
  if (dy.length !== x.n * k * model.numClasses)
    throw new Error(`internal: dy has ${dy.length} values for ${x.n} x ${k} x ${model.numClasses}`);
  return model.runtime.vjp(x, dy, out);
}

/**
 * `vjp` under its 0.1 name (it now takes a `Batch`, not a tensor, and returns dx as a plain array).
 * @deprecated use `vjp`; this name goes at 1.0.
 */
export const vjpRows = vjp;
