import * as tf from '@tensorflow/tfjs';
import type { Classifier } from './classifier.js';
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
  /** [n, k, H, W, C] gradients. */
  grads: tf.Tensor;
}

export interface GradientOptions {
  /** Upper bound on rows (images x candidates) per backward pass (default and cap: what the model's runtime and memory allow). */
  maxRows?: number;
  /** Per image: a class whose logit is subtracted from every candidate's (DeepFool's f_k - f_label). */
  reference?: Int32Array;
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

/** The selected logit (differences) and their input gradients [n, k, H, W, C] for a batch. */
async function selectedGradients(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number, reference?: Int32Array): Promise<{ logits: Float32Array; grads: tf.Tensor }> {
  const K = model.numClasses;
  const { logits, dx } = await vjp(model, x, selection(cand, x.shape[0], k, K, reference), k);
  const picked = Float32Array.from(cand, (cls, r) => {
    const i = Math.floor(r / k);
    return logits[i * K + cls] - (reference ? logits[i * K + reference[i]] : 0);
  });
  return { logits: picked, grads: dx };
}

export async function candidateGradients(model: Classifier, x: tf.Tensor4D, cand: Int32Array, k: number, opts: GradientOptions = {}): Promise<CandidateGradients> {
  const n = x.shape[0];
  const budget = model.runtime ? model.runtime.maxRows : Math.min(32, model.maxBatch?.gradient ?? 32);
  const maxRows = Math.max(1, Math.min(opts.maxRows ?? budget, budget));
  const logits = new Float32Array(n * k);
  const parts: tf.Tensor[] = [];
  const run = async (first: number, count: number, j0: number, kj: number) => {
    const xs = count === n ? x : (x.slice([first], [count]) as tf.Tensor4D);
    const c = Int32Array.from({ length: count * kj }, (_, r) => cand[(first + Math.floor(r / kj)) * k + j0 + (r % kj)]);
    try {
      const r = await selectedGradients(model, xs, c, kj, opts.reference?.subarray(first, first + count));
      r.logits.forEach((v, t) => (logits[(first + Math.floor(t / kj)) * k + j0 + (t % kj)] = v));
      parts.push(r.grads);
    } finally {
      if (xs !== x) xs.dispose();
    }
  };
  try {
    if (k <= maxRows) {
      // Whole images per chunk (their k rows share one forward pass), as many as the row budget allows.
      const per = Math.floor(maxRows / k);
      for (let first = 0; first < n; first += per) await run(first, Math.min(per, n - first), 0, k);
      return { logits, grads: parts.length === 1 ? parts.pop()! : tf.concat(parts, 0) };
    }
    // More candidates than the budget: one image at a time, its candidates in chunks.
    const perImage: tf.Tensor[] = [];
    try {
      for (let i = 0; i < n; i++) {
        for (let j0 = 0; j0 < k; j0 += maxRows) await run(i, 1, j0, Math.min(maxRows, k - j0));
        const chunks = parts.splice(0);
        perImage.push(tf.concat(chunks, 1));
        tf.dispose(chunks);
      }
      return { logits, grads: tf.concat(perImage, 0) };
    } finally {
      tf.dispose(perImage);
    }
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
  const perClass: tf.Tensor[] = [];
  try {
    for (let j = 0; j < k; j++) {
      const classes = Int32Array.from({ length: n }, (_, i) => cand[i * k + j]);
      const { logits: l, grads } = await selectedGradients(model, x, classes, 1, reference);
      l.forEach((v, i) => (logits[i * k + j] = v));
      perClass.push(grads);
    }
    return { logits, grads: tf.concat(perClass, 1) };
  } finally {
    tf.dispose(perClass);
  }
}
