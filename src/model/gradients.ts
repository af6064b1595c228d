import * as tf from '@tensorflow/tfjs';
import type { Classifier } from './classifier.js';
import { vjp } from './compute.js';

/**
 * For each image n and each of its k candidate classes cand[n][j], the logit f_{cand[n][j]}(x_n)
 * (or, given `reference`, the difference f_{cand[n][j]} - f_{reference[n]}) and its gradient with
 * respect to x_n. All n*k gradients come from vector-Jacobian products over the batch tiled k times:
 * row (n, j) of the tiled batch only influences its own selected logit, so the gradient of the sum of
 * selected logits, row by row, is exactly the per-class gradient. Rows go in chunks that fit memory.
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

/** dy rows: +1 on classes[r], -1 on minus[r]. */
function selection(classes: Int32Array, numClasses: number, minus?: Int32Array): Float32Array {
  const dy = new Float32Array(classes.length * numClasses);
  classes.forEach((c, r) => {
    dy[r * numClasses + c] += 1;
    if (minus) dy[r * numClasses + minus[r]] -= 1;
  });
  return dy;
}

/** The selected logit (difference) per row and its input gradient, for a batch of rows. */
async function rowsGradient(model: Classifier, xRows: tf.Tensor4D, classes: Int32Array, minus?: Int32Array): Promise<{ logits: Float32Array; grads: tf.Tensor4D }> {
  const k = model.numClasses;
  const { logits, dx } = await vjp(model, xRows, selection(classes, k, minus));
  const picked = Float32Array.from(classes, (c, r) => logits[r * k + c] - (minus ? logits[r * k + minus[r]] : 0));
  return { logits: picked, grads: dx };
}

export async function candidateGradients(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number, opts: GradientOptions = {}): Promise<CandidateGradients> {
  const n = x.shape[0];
  const rows = n * k;
  const maxRows = Math.max(1, Math.min(opts.maxRows ?? 32, model.maxBatch?.gradient ?? 32));
  const logits = new Float32Array(rows);
  const parts: tf.Tensor4D[] = [];
  try {
    for (let start = 0; start < rows; start += maxRows) {
      const end = Math.min(rows, start + maxRows);
      // Row r of the tiled batch is image floor(r / k) with class cand[r].
      const images = Int32Array.from({ length: end - start }, (_, i) => Math.floor((start + i) / k));
      const xRows = tf.tidy(() => tf.gather(x, tf.tensor1d(images, 'int32')) as tf.Tensor4D);
      const ref = opts.reference;
      try {
        const r = await rowsGradient(model, xRows, cand.subarray(start, end), ref ? images.map((i) => ref[i]) : undefined);
        logits.set(r.logits, start);
        parts.push(r.grads);
      } finally {
        xRows.dispose();
      }
    }
    const [, h, w, c] = x.shape;
    const grads = tf.tidy(() => (parts.length === 1 ? parts[0] : tf.concat(parts, 0)).reshape([n, k, h, w, c]));
    return { logits, grads };
  } finally {
    tf.dispose(parts);
  }
}

/**
 * The naive reference: one backward pass per candidate class (what other toolkits do). Same results
 * as `candidateGradients`; kept for the benchmark and the equality test.
 */
export async function candidateGradientsLoop(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number, reference?: Int32Array): Promise<CandidateGradients> {
  const n = x.shape[0];
  const logits = new Float32Array(n * k);
  const perClass: tf.Tensor4D[] = [];
  try {
    for (let j = 0; j < k; j++) {
      const classes = Int32Array.from({ length: n }, (_, i) => cand[i * k + j]);
      const { logits: l, grads } = await rowsGradient(model, x, classes, reference);
      l.forEach((v, i) => (logits[i * k + j] = v));
      perClass.push(grads);
    }
    return { logits, grads: tf.stack(perClass, 1) };
  } finally {
    tf.dispose(perClass);
  }
}
