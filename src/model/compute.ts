import * as tf from '../tf.js';
import type { Differentiable } from './classifier.js';
import { perturb } from '../math/perturb.js';
import { takeRows } from '../math/rows.js';

/**
 * The one forward function and the one gradient function every attack and evaluation calls. They run
 * on the classifier's runtime (ONNX Runtime) when it has one, else on TF.js through `logits`; callers
 * never know which.
 */

/** Logits [n * numClasses] of a pixel-space batch. */
export async function forwardLogits(model: Differentiable, x: tf.Tensor4D): Promise<Float32Array> {
  if (model.runtime) return model.runtime.forward(x);
  // Read outside tf.tidy: tidy walks a returned typed array element by element looking for tensors.
  const y = tf.tidy(() => model.logits(x));
  try {
    return y.dataSync() as Float32Array;
  } finally {
    y.dispose();
  }
}

/**
 * Logits [n * numClasses] of clip(x + v, 0, 255) for n images stored as uint8 [n, H, W, C] (a dataset's
 * bytes). ONNX Runtime takes the bytes and adds v inside its graph; TF.js builds the float batch.
 */
export async function logitsOfImages(model: Differentiable, pixels: Uint8Array, n: number, v: tf.Tensor3D | Float32Array | null): Promise<Float32Array> {
  const vData = v === null || v instanceof Float32Array ? v : (v.dataSync() as Float32Array);
  if (model.runtime) return model.runtime.forwardImages(pixels, n, vData);
  const [h, w, c] = model.inputShape;
  const x = tf.tidy(() => perturb(tf.tensor4d(Float32Array.from(pixels), [n, h, w, c]), vData && tf.tensor3d(vData, [h, w, c])));
  try {
    return await forwardLogits(model, x);
  } finally {
    x.dispose();
  }
}

/** Top-1 labels of clip(x + v, 0, 255) for n images stored as uint8 [n, H, W, C]. */
export async function predictImages(model: Differentiable, pixels: Uint8Array, n: number, v: tf.Tensor3D | Float32Array | null): Promise<Int32Array> {
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
export async function predictLabels(model: Differentiable, x: tf.Tensor4D): Promise<Int32Array> {
  return argmaxRows(await forwardLogits(model, x), model.numClasses);
}

/**
 * Vector-Jacobian products: logits of x [n, H, W, C] and, for each image i and each of its k
 * cotangents dy[i, j] (dy: [n, k, numClasses] flat), dx[i, j] = sum_c dy[i, j, c] d logit_c(x_i) / d x_i.
 * Returns dx as [n, k, H, W, C]; the caller owns it. ONNX Runtime runs one forward pass for all k;
 * TF.js differentiates the batch tiled k times.
 */
export async function vjp(model: Differentiable, x: tf.Tensor4D, dy: Float32Array, k = 1): Promise<{ logits: Float32Array; dx: tf.Tensor }> {
  const [n, h, w, c] = x.shape;
  if (model.runtime) {
    const r = await vjpRows(model, x, dy, k);
    return { logits: r.logits, dx: tf.tensor(r.dx, [n, k, h, w, c]) };
  }
  return vjpTfjs(model, x, dy, k);
}

/**
 * `vjp` with dx as a plain array [n, k, H, W, C] (written into `out` when given: shared memory, so
 * that ONNX Runtime's workers write their rows in place). For callers that read a few rows of dx and
 * never need all of it as a tensor.
 */
export async function vjpRows(model: Differentiable, x: tf.Tensor4D, dy: Float32Array, k = 1, out?: Float32Array): Promise<{ logits: Float32Array; dx: Float32Array }> {
  if (model.runtime) {
    checkCotangents(model, x, dy, k);
    return model.runtime.vjp(x, dy, out);
  }
  const r = await vjpTfjs(model, x, dy, k);
  const dx = r.dx.dataSync() as Float32Array;
  r.dx.dispose();
  if (!out) return { logits: r.logits, dx };
  out.set(dx);
  return { logits: r.logits, dx: out };
}

/** dy must hold k cotangents of numClasses values per image of x. */
function checkCotangents(model: Differentiable, x: tf.Tensor4D, dy: Float32Array, k: number): void {
  const n = x.shape[0];
  if (dy.length !== n * k * model.numClasses) throw new Error(`internal: dy has ${dy.length} values for ${n} x ${k} x ${model.numClasses}`);
}

/** The TF.js engine's vjp: the batch tiled k times, differentiated by tf.grad. */
async function vjpTfjs(model: Differentiable, x: tf.Tensor4D, dy: Float32Array, k: number): Promise<{ logits: Float32Array; dx: tf.Tensor }> {
  const [n, h, w, c] = x.shape;
  checkCotangents(model, x, dy, k);
  let logits: Float32Array | undefined;
  const dx = tf.tidy(() => {
    const weights = tf.tensor2d(dy, [n * k, model.numClasses]);
    const tiled = k === 1 ? x : takeRows(x, Int32Array.from({ length: n * k }, (_, r) => Math.floor(r / k)));
    const g = tf.grad((t: tf.Tensor) => {
      const y = model.logits(t as tf.Tensor4D);
      if (!logits) {
        const all = y.dataSync() as Float32Array;
        logits = k === 1 ? all : Float32Array.from({ length: n * model.numClasses }, (_, i) => all[(Math.floor(i / model.numClasses) * k) * model.numClasses + (i % model.numClasses)]);
      }
      return tf.sum(tf.mul(y, weights));
    })(tiled);
    return g.reshape([n, k, h, w, c]);
  });
  return { logits: logits!, dx };
}
