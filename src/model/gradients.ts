import * as tf from '@tensorflow/tfjs';
import type { Classifier } from './classifier.js';

/**
 * The one place attacks get input gradients from; everything runtime-specific stays behind it.
 *
 * For each image n and each of its k candidate classes cand[n][j], returns the logit f_{cand[n][j]}(x_n)
 * and its gradient with respect to x_n. All n*k gradients come from ONE backward pass over the batch
 * tiled k times: row (n, j) of the tiled batch only influences its own selected logit, so the
 * gradient of the sum of selected logits, row by row, is exactly the per-class gradient.
 */
export interface CandidateGradients {
  /** [n, k] logits of the candidate classes. */
  logits: Float32Array;
  /** [n, k, H, W, C] gradients. */
  grads: tf.Tensor;
}

export interface GradientOptions {
  /** Upper bound on rows (images x candidates) per backward pass, to cap memory (wasm has a 4 GB heap). */
  maxRows?: number;
}

function selectMask(cand: Int32Array, rows: number, numClasses: number): tf.Tensor2D {
  // A one-hot mask instead of tf.gather: gather's gradient needs a kernel the wasm backend lacks.
  return tf.oneHot(tf.tensor1d(cand.subarray(0, rows), 'int32'), numClasses).toFloat() as tf.Tensor2D;
}

/** Logits of the selected class per row and their input gradients, for a batch of rows. */
function rowsGradient(model: Classifier, xRows: tf.Tensor4D, classes: Int32Array): { logits: tf.Tensor1D; grads: tf.Tensor4D } {
  return tf.tidy(() => {
    const mask = selectMask(classes, xRows.shape[0], model.numClasses);
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
  const maxRows = Math.max(1, opts.maxRows ?? 32);
  const logits = new Float32Array(rows);
  const parts: tf.Tensor4D[] = [];
  for (let start = 0; start < rows; start += maxRows) {
    const end = Math.min(rows, start + maxRows);
    const { logits: l, grads } = tf.tidy(() => {
      // Row r of the tiled batch is image floor(r / k) with class cand[r].
      const imageIdx = tf.tensor1d(Int32Array.from({ length: end - start }, (_, i) => Math.floor((start + i) / k)), 'int32');
      const xRows = tf.gather(x, imageIdx) as tf.Tensor4D;
      return rowsGradient(model, xRows, cand.subarray(start, end));
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
export function candidateGradientsLoop(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number): CandidateGradients {
  const n = x.shape[0];
  const logits = new Float32Array(n * k);
  const perClass: tf.Tensor4D[] = [];
  for (let j = 0; j < k; j++) {
    const classes = Int32Array.from({ length: n }, (_, i) => cand[i * k + j]);
    const { logits: l, grads } = rowsGradient(model, x, classes);
    l.dataSync().forEach((v, i) => (logits[i * k + j] = v));
    l.dispose();
    perClass.push(grads);
  }
  const grads = tf.stack(perClass, 1);
  tf.dispose(perClass);
  return { logits, grads };
}
