import * as tf from '@tensorflow/tfjs';
import type { Classifier } from './classifier.js';

/**
 * The one place attacks get input gradients from; everything runtime-specific stays behind it.
 *
 * For each image n and each of its k candidate classes cand[n][j], returns the logit f_{cand[n][j]}(x_n)
 * (or, given `reference`, the difference f_{cand[n][j]} - f_{reference[n]}) and its gradient with
 * respect to x_n. All n*k gradients come from ONE backward pass over the batch tiled k times: row
 * (n, j) of the tiled batch only influences its own selected logit, so the gradient of the sum of
 * selected logits, row by row, is exactly the per-class gradient.
 */
export interface CandidateGradients {
  /** [n, k] logits of the candidate classes. */
  logits: Float32Array;
  /** [n, k, H, W, C] gradients. */
  grads: tf.Tensor;
}

export interface GradientOptions {
  /** Upper bound on rows (images x candidates) per backward pass (default: what the model's memory allows, at most 32). */
  maxRows?: number;
  /** Per image: a class whose logit is subtracted from every candidate's (DeepFool's f_k - f_label). */
  reference?: Int32Array;
}

/** Row r selects +1 on classes[r] (and -1 on minus[r]). A mask, not tf.gather: gather's gradient needs a kernel wasm lacks. */
function selectMask(classes: Int32Array, numClasses: number, minus?: Int32Array): tf.Tensor2D {
  const plus = tf.oneHot(tf.tensor1d(classes, 'int32'), numClasses).toFloat();
  return (minus ? tf.sub(plus, tf.oneHot(tf.tensor1d(minus, 'int32'), numClasses).toFloat()) : plus) as tf.Tensor2D;
}

/** The selected logit (difference) per row and its input gradient, for a batch of rows. */
function rowsGradient(model: Classifier, xRows: tf.Tensor4D, classes: Int32Array, minus?: Int32Array): { logits: tf.Tensor1D; grads: tf.Tensor4D } {
  return tf.tidy(() => {
    const mask = selectMask(classes, model.numClasses, minus);
    let picked: tf.Tensor1D | null = null;
    const f = (x: tf.Tensor) => {
      const p = tf.sum(tf.mul(model.logits(x as tf.Tensor4D), mask), 1) as tf.Tensor1D;
      picked = tf.keep(p);
      return tf.sum(p);
    };
    const grads = tf.grad(f)(xRows) as tf.Tensor4D;
    const logits = picked! as tf.Tensor1D;
    return { logits, grads };
  });
}

export function candidateGradients(
  model: Classifier,
  x: tf.Tensor4D,
  cand: Int32Array,
  k: number,
  opts: GradientOptions = {},
): CandidateGradients {
  const n = x.shape[0];
  const rows = n * k;
  const maxRows = Math.max(1, Math.min(opts.maxRows ?? 32, model.maxBatch?.gradient ?? 32));
  const logits = new Float32Array(rows);
  const parts: tf.Tensor4D[] = [];
  for (let start = 0; start < rows; start += maxRows) {
    const end = Math.min(rows, start + maxRows);
    const { logits: l, grads } = tf.tidy(() => {
      // Row r of the tiled batch is image floor(r / k) with class cand[r].
      const images = Int32Array.from({ length: end - start }, (_, i) => Math.floor((start + i) / k));
      const xRows = tf.gather(x, tf.tensor1d(images, 'int32')) as tf.Tensor4D;
      const ref = opts.reference;
      return rowsGradient(model, xRows, cand.subarray(start, end), ref ? images.map((i) => ref[i]) : undefined);
    });
    logits.set(l.dataSync(), start);
    l.dispose();
    parts.push(grads);
  }
  const [, h, w, c] = x.shape;
  const grads = tf.tidy(() => (parts.length === 1 ? parts[0] : tf.concat(parts, 0)).reshape([n, k, h, w, c]));
  tf.dispose(parts);
  return { logits, grads };
}

/**
 * The naive reference: one backward pass per candidate class (what other toolkits do). Same results
 * as `candidateGradients`; kept for the benchmark and the equality test.
 */
export function candidateGradientsLoop(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number, reference?: Int32Array): CandidateGradients {
  const n = x.shape[0];
  const logits = new Float32Array(n * k);
  const perClass: tf.Tensor4D[] = [];
  for (let j = 0; j < k; j++) {
    const classes = Int32Array.from({ length: n }, (_, i) => cand[i * k + j]);
    const { logits: l, grads } = rowsGradient(model, x, classes, reference);
    l.dataSync().forEach((v, i) => (logits[i * k + j] = v));
    l.dispose();
    perClass.push(grads);
  }
  const grads = tf.stack(perClass, 1);
  tf.dispose(perClass);
  return { logits, grads };
}
