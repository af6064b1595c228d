import * as tf from '@tensorflow/tfjs';
import type { Classifier } from './classifier.js';

/**
 * The one forward function and the one gradient function every attack and evaluation calls. They run
 * on the classifier's runtime (ONNX Runtime) when it has one, else on TF.js through `logits`; callers
 * never know which.
 */

/** Logits [n * numClasses] of a pixel-space batch. */
export async function forwardLogits(model: Classifier, x: tf.Tensor4D): Promise<Float32Array> {
  if (model.runtime) return model.runtime.forward(x);
  return tf.tidy(() => model.logits(x).dataSync() as Float32Array);
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
export async function predictLabels(model: Classifier, x: tf.Tensor4D): Promise<Int32Array> {
  return argmaxRows(await forwardLogits(model, x), model.numClasses);
}

/**
 * Vector-Jacobian products: logits of x [n, H, W, C] and, for each image i and each of its k
 * cotangents dy[i, j] (dy: [n, k, numClasses] flat), dx[i, j] = sum_c dy[i, j, c] d logit_c(x_i) / d x_i.
 * Returns dx as [n, k, H, W, C]; the caller owns it. ONNX Runtime runs one forward pass for all k;
 * TF.js differentiates the batch tiled k times.
 */
export async function vjp(model: Classifier, x: tf.Tensor4D, dy: Float32Array, k = 1): Promise<{ logits: Float32Array; dx: tf.Tensor }> {
  const [n, h, w, c] = x.shape;
  if (dy.length !== n * k * model.numClasses) throw new Error(`internal: dy has ${dy.length} values for ${n} x ${k} x ${model.numClasses}`);
  if (model.runtime) {
    const r = await model.runtime.vjp(x, dy);
    return { logits: r.logits, dx: tf.tensor(r.dx, [n, k, h, w, c]) };
  }
  let logits: Float32Array | undefined;
  const dx = tf.tidy(() => {
    const weights = tf.tensor2d(dy, [n * k, model.numClasses]);
    const tiled = k === 1 ? x : (tf.gather(x, tf.tensor1d(Int32Array.from({ length: n * k }, (_, r) => Math.floor(r / k)), 'int32')) as tf.Tensor4D);
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
