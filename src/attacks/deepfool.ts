import * as tf from '@tensorflow/tfjs';
import type { Classifier } from '../model/classifier.js';
import { candidateGradients, type GradientOptions } from '../model/gradients.js';
import type { Norm } from '../math/lp.js';

export interface DeepFoolOptions extends GradientOptions {
  /** Lp norm of the minimal perturbation: 2, or 'inf' (the Lp step with q = 1). Default 2. */
  norm?: Norm;
  /** Candidate classes: the top-k of the clean prediction (default 10). */
  candidates?: number;
  /** Overshoot applied to the total perturbation: r = (1 + overshoot) * sum of steps (default 0.02). */
  overshoot?: number;
  /** Step cap per image (default 50). */
  maxSteps?: number;
  /**
   * The label to move each image away from (default: the model's prediction on x). An image the
   * model does not already give this label is returned untouched with status 'already'.
   */
  labels?: Int32Array;
}

/**
 * converged: the label changed; maxSteps: gave up; already: x was not of the given label;
 * zeroGradient: every candidate's logit difference has a zero gradient (no direction to move).
 */
export type DeepFoolStatus = 'converged' | 'maxSteps' | 'already' | 'zeroGradient';

export interface DeepFoolResult {
  /** [n, H, W, C] perturbations (overshoot included): x + r crosses the boundary when converged. */
  r: tf.Tensor4D;
  steps: Int32Array;
  status: DeepFoolStatus[];
  /** The label each image started from and its label at x + r. */
  fromLabel: Int32Array;
  toLabel: Int32Array;
}

const TINY = 1e-12;

/** Indices of the k largest entries of each row of a [n, m] array. */
function topK(logits: Float32Array, n: number, m: number, k: number): Int32Array {
  const out = new Int32Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = Array.from(logits.subarray(i * m, (i + 1) * m), (v, j) => [v, j] as const);
    row.sort((a, b) => b[0] - a[0]);
    for (let j = 0; j < k; j++) out[i * k + j] = row[j][1];
  }
  return out;
}

/**
 * Batched multi-class DeepFool (Moosavi-Dezfooli et al., CVPR 2016). For each image, linearise the
 * classifier around the current point and step to the nearest of the k-1 linearised boundaries
 * between the original label and the other candidates:
 *   L2:   r = (|f_l| / ||w_l||_2 + 1e-4) * w_l / ||w_l||_2
 *   Linf: r = (|f_l| / ||w_l||_1 + 1e-4) * sign(w_l)
 * with l = argmin_k |f_k| / ||w_k||_q, f_k, w_k the logit difference to candidate k and its gradient.
 */
export function deepfool(model: Classifier, x: tf.Tensor4D, opts: DeepFoolOptions = {}): DeepFoolResult {
  const norm = opts.norm ?? 2;
  const overshoot = opts.overshoot ?? 0.02;
  const maxSteps = opts.maxSteps ?? 50;
  const n = x.shape[0];
  const k = Math.min(opts.candidates ?? 10, model.numClasses);
  const [h, w, c] = [x.shape[1], x.shape[2], x.shape[3]];

  const clean = tf.tidy(() => model.logits(x).dataSync() as Float32Array);
  const order = topK(clean, n, model.numClasses, k);
  const fromLabel = Int32Array.from({ length: n }, (_, i) => opts.labels?.[i] ?? order[i * k]);
  const cand = new Int32Array(n * k);
  for (let i = 0; i < n; i++) {
    // Candidate 0 is the label to leave; the rest are the top-ranked other classes.
    const others = Array.from(order.subarray(i * k, (i + 1) * k)).filter((j) => j !== fromLabel[i]);
    const ranked = [fromLabel[i], ...others].slice(0, k);
    cand.set(ranked, i * k);
  }

  const steps = new Int32Array(n);
  const status: DeepFoolStatus[] = new Array(n).fill('maxSteps');
  const toLabel = Int32Array.from({ length: n }, (_, i) => order[i * k]);
  let rTot: tf.Tensor4D = tf.zeros([n, h, w, c]);
  let active = Array.from({ length: n }, (_, i) => i).filter((i) => {
    if (toLabel[i] === fromLabel[i]) return true;
    status[i] = 'already';
    return false;
  });

  for (let step = 0; step < maxSteps && active.length > 0; step++) {
    const idx = tf.tensor1d(active, 'int32');
    const xi = tf.tidy(() => tf.add(tf.gather(x, idx), tf.mul(tf.gather(rTot, idx), 1 + overshoot)) as tf.Tensor4D);
    // Cheap forward check first: only images still on their label pay for gradients.
    const pred = tf.tidy(() => tf.argMax(model.logits(xi), 1).dataSync() as Int32Array);
    const still: number[] = [];
    active.forEach((img, a) => {
      if (pred[a] !== fromLabel[img]) {
        status[img] = 'converged';
        toLabel[img] = pred[a];
      } else still.push(a);
    });
    if (still.length === 0) {
      tf.dispose([idx, xi]);
      active = [];
      break;
    }
    const sub = tf.tidy(() => tf.gather(xi, tf.tensor1d(still, 'int32')) as tf.Tensor4D);
    const subCand = new Int32Array(still.length * k);
    still.forEach((a, s) => subCand.set(cand.subarray(active[a] * k, (active[a] + 1) * k), s * k));
    const g = candidateGradients(model, sub, subCand, k, opts);
    const { stepTensor, zero } = lpStep(g, still.length, k, norm);
    g.grads.dispose();
    const stillImgs = still.map((a) => active[a]);
    const prev = rTot;
    rTot = tf.tidy(() => {
      const update = tf.scatterND(tf.tensor2d(stillImgs, [stillImgs.length, 1], 'int32'), stepTensor, [n, h, w, c]);
      return tf.add(prev, update) as tf.Tensor4D;
    });
    prev.dispose();
    tf.dispose([idx, xi, sub, stepTensor]);
    const next: number[] = [];
    stillImgs.forEach((img, s) => {
      steps[img]++;
      if (zero[s]) status[img] = 'zeroGradient';
      else next.push(img);
    });
    active = next;
  }

  // Images still active after the cap: check where their final point landed.
  const r = tf.tidy(() => tf.mul(rTot, 1 + overshoot) as tf.Tensor4D);
  rTot.dispose();
  if (active.length > 0) {
    const idx = tf.tensor1d(active, 'int32');
    const pred = tf.tidy(() => tf.argMax(model.logits(tf.add(tf.gather(x, idx), tf.gather(r, idx)) as tf.Tensor4D), 1).dataSync());
    idx.dispose();
    active.forEach((img, a) => {
      toLabel[img] = pred[a];
      if (pred[a] !== fromLabel[img]) status[img] = 'converged';
    });
  }
  return { r, steps, status, fromLabel, toLabel };
}

/**
 * One DeepFool step per image from the candidate gradients: picks the closest linearised boundary
 * and returns the step [m, H, W, C]; `zero[s]` marks images where no candidate has a usable gradient.
 */
function lpStep(g: { logits: Float32Array; grads: tf.Tensor }, m: number, k: number, norm: Norm): { stepTensor: tf.Tensor4D; zero: boolean[] } {
  const [, , h, w, c] = g.grads.shape;
  const { wDiff, wNorm } = tf.tidy(() => {
    const flat = g.grads.reshape([m, k, -1]);
    const wDiff = tf.sub(flat.slice([0, 1, 0], [m, k - 1, -1]), flat.slice([0, 0, 0], [m, 1, -1]));
    // The dual norm q of the attack norm p: ||.||_2 for L2, ||.||_1 for Linf.
    const wNorm = norm === 2 ? tf.sqrt(tf.sum(tf.square(wDiff), 2)) : tf.sum(tf.abs(wDiff), 2);
    return { wDiff, wNorm };
  });
  const normsArr = wNorm.dataSync();
  wNorm.dispose();
  const coef = new Float32Array(m * (k - 1));
  const zero: boolean[] = [];
  for (let s = 0; s < m; s++) {
    let best = -1;
    let bestDist = Infinity;
    for (let j = 1; j < k; j++) {
      const nrm = normsArr[s * (k - 1) + j - 1];
      if (!(nrm > TINY)) continue;
      const fk = g.logits[s * k + j] - g.logits[s * k];
      const dist = Math.abs(fk) / nrm;
      if (dist < bestDist) {
        bestDist = dist;
        best = j;
      }
    }
    zero.push(best < 0);
    if (best < 0) continue;
    const nrm = normsArr[s * (k - 1) + best - 1];
    // +1e-4 as in the reference implementation: lands just past the linearised boundary.
    coef[s * (k - 1) + best - 1] = norm === 2 ? (bestDist + 1e-4) / nrm : bestDist + 1e-4;
  }
  const stepTensor = tf.tidy(() => {
    const dir = norm === 2 ? wDiff : tf.sign(wDiff);
    const weights = tf.tensor3d(coef, [m, k - 1, 1]);
    return tf.sum(tf.mul(dir, weights), 1).reshape([m, h, w, c]) as tf.Tensor4D;
  });
  wDiff.dispose();
  return { stepTensor, zero };
}
