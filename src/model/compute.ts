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
 * The vector-Jacobian product: logits of x and dx = sum_j dy[n, j] * d logit_j(x_n) / d x_n, for a
 * batch x [n, H, W, C] and dy [n * numClasses]. The caller owns dx.
 */
export async function vjp(model: Classifier, x: tf.Tensor4D, dy: Float32Array): Promise<{ logits: Float32Array; dx: tf.Tensor4D }> {
  if (model.runtime) {
    const r = await model.runtime.vjp(x, dy);
    return { logits: r.logits, dx: tf.tensor4d(r.dx, x.shape) };
  }
  let logits: Float32Array | undefined;
  const dx = tf.tidy(() => {
    const weights = tf.tensor2d(dy, [x.shape[0], model.numClasses]);
    return tf.grad((t: tf.Tensor) => {
      const y = model.logits(t as tf.Tensor4D);
      logits = y.dataSync() as Float32Array;
      return tf.sum(tf.mul(y, weights));
    })(x) as tf.Tensor4D;
  });
  return { logits: logits!, dx };
}
