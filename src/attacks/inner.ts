import * as tf from '../tf.js';
import type { Classifier } from '../model/classifier.js';
import { argmaxRows, forwardLogits, vjpRows } from '../model/compute.js';
import { l2, projectInPlace, type Norm } from '../math/lp.js';

/**
 * Gradient-sign inner attacks for Algorithm 1 (as the Adversarial Robustness Toolbox lets
 * UniversalPerturbation use FGSM or PGD instead of DeepFool): each moves the images of a batch up the
 * cross-entropy of their label (targeted: down the cross-entropy of the target), inside an Lp ball of
 * radius eps, keeping x + r in [0, 255]. Batched: one vector-Jacobian product per step for the batch.
 */

export interface InnerOptions {
  /** 'fgsm': one step of length eps; 'pgd': `steps` steps of `stepSize`, projected onto the eps ball. */
  kind: 'fgsm' | 'pgd';
  norm: Norm;
  eps: number;
  steps?: number;
  stepSize?: number;
  /** The labels to move away from (untargeted). */
  labels: Int32Array;
  /** Targeted: the class to move towards. */
  target?: number;
}

export interface InnerResult {
  /** [n * H * W * C] perturbations. */
  r: Float32Array;
  /** fooled: the label changed (targeted: reached the target) at x + r. */
  fooled: boolean[];
}

/** d loss / d logits of each row: softmax - onehot(label) (ascent on its cross-entropy), or its negative towards a target. */
export function crossEntropyCotangent(logits: Float32Array, k: number, labels: Int32Array, target?: number): Float32Array {
  const n = logits.length / k;
  const dy = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = logits.subarray(i * k, (i + 1) * k);
    const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(row[j] - max);
    const y = target ?? labels[i];
    const sign = target === undefined ? 1 : -1;
    for (let j = 0; j < k; j++) dy[i * k + j] = sign * (Math.exp(row[j] - max) / sum - (j === y ? 1 : 0));
  }
  return dy;
}

/** The steepest step of length `length` in the norm's geometry along g: sign(g) for Linf, g/||g|| for L2. */
function steepestInPlace(g: Float32Array, norm: Norm, length: number): Float32Array {
  if (norm === 'inf') for (let t = 0; t < g.length; t++) g[t] = g[t] > 0 ? length : g[t] < 0 ? -length : 0;
  else {
    const n = l2(g);
    for (let t = 0; t < g.length; t++) g[t] = n > 0 ? (g[t] * length) / n : 0;
  }
  return g;
}

export async function innerAttack(model: Classifier, x: tf.Tensor4D, o: InnerOptions): Promise<InnerResult> {
  const n = x.shape[0];
  const size = x.shape[1] * x.shape[2] * x.shape[3];
  const k = model.numClasses;
  const base = x.dataSync() as Float32Array;
  const r = new Float32Array(n * size);
  const steps = o.kind === 'fgsm' ? 1 : o.steps ?? 10;
  const stepSize = o.kind === 'fgsm' ? o.eps : o.stepSize ?? (2.5 * o.eps) / steps;
  const done = new Array<boolean>(n).fill(false);
  const reached = (pred: number, i: number) => (o.target !== undefined ? pred === o.target : pred !== o.labels[i]);
  for (let s = 0; s < steps; s++) {
    const at = tf.tidy(() => tf.clipByValue(tf.add(x, tf.tensor4d(r, x.shape)), 0, 255) as tf.Tensor4D);
    // The loss's cotangent needs the logits first: a forward pass, then the vector-Jacobian product.
    const g = await forwardLogits(model, at)
      .then((logits) => vjpRows(model, at, crossEntropyCotangent(logits, k, o.labels, o.target), 1))
      .finally(() => at.dispose());
    const pred = argmaxRows(g.logits, k);
    for (let i = 0; i < n; i++) {
      if (o.kind === 'pgd' && reached(pred[i], i)) done[i] = true; // PGD stops moving an image once it is fooled
      if (done[i]) continue;
      const ri = r.subarray(i * size, (i + 1) * size);
      const step = steepestInPlace(g.dx.slice(i * size, (i + 1) * size), o.norm, stepSize);
      for (let t = 0; t < size; t++) ri[t] += step[t];
      projectInPlace(ri, o.norm, o.eps);
      // Keep x + r inside the pixel range, so r is the perturbation actually applied.
      for (let t = 0; t < size; t++) ri[t] = Math.min(255, Math.max(0, base[i * size + t] + ri[t])) - base[i * size + t];
    }
  }
  const final = tf.tidy(() => tf.clipByValue(tf.add(x, tf.tensor4d(r, x.shape)), 0, 255) as tf.Tensor4D);
  const pred = argmaxRows(await forwardLogits(model, final).finally(() => final.dispose()), k);
  return { r, fooled: Array.from({ length: n }, (_, i) => reached(pred[i], i)) };
}
