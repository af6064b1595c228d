import type { Classifier } from '../classifier/classifier.js';
import { candidateGradients, type GradientOptions, type GradientScratch } from '../classifier/gradients.js';
import { forwardLogits, predictLabels } from '../classifier/compute.js';
import { addScaled, checkBatch, imageSize, pickImages, pickRows, type Batch } from '../math/batch.js';
import type { Norm } from '../math/lp.js';
import { UsageError } from '../errors.js';
import { criterionOf } from './criterion.js';

/** DeepFool's settings: the norm of the step (2 or inf), the candidate classes per image, the overshoot, the step cap, known labels and an optional target class. */
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
  /**
   * Targeted DeepFool: each step crosses the linearised boundary between the current class and this
   * one, until the model gives this class (converged); images already of it are 'already'.
   */
  target?: number;
  /** The model's logits of x [n, numClasses], when the caller has them (saves a forward pass). */
  logits?: Float32Array;
}

/**
 * converged: the label changed (targeted: reached the target); maxSteps: gave up; already: x was not of the given label;
 * zeroGradient: every candidate's logit difference has a zero gradient (no direction to move).
 */
export type DeepFoolStatus = 'converged' | 'maxSteps' | 'already' | 'zeroGradient';

/** What DeepFool found for each image of the batch: its perturbation r [n, H, W, C], its steps, why it stopped, and its labels before and after. */
export interface DeepFoolResult {
  /** [n, H, W, C] perturbations (overshoot included): x + r crosses the boundary when converged. */
  r: Float32Array;
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
 * Plain arrays from end to end: the iterate, the gradient rows and the step never leave this memory.
 */
export async function deepfool(model: Classifier, x: Batch, opts: DeepFoolOptions = {}): Promise<DeepFoolResult> {
  const norm = opts.norm ?? 2;
  const overshoot = opts.overshoot ?? 0.02;
  const maxSteps = opts.maxSteps ?? 50;
  checkBatch(x, model.inputShape, 'deepfool');
  const n = x.n;
  const size = imageSize(x.shape);
  const candidates = opts.candidates ?? 10;
  if (!Number.isInteger(candidates) || candidates < 2) throw new UsageError(`{candidates}: expected an integer >= 2, got ${candidates}`);
  const k = Math.min(candidates, model.numClasses);

  const clean = opts.logits ?? (await forwardLogits(model, x));
  const order = topK(clean, n, model.numClasses, k);
  const fromLabel = Int32Array.from({ length: n }, (_, i) => opts.labels?.[i] ?? order[i * k]);
  const others = otherClasses(order, fromLabel, k);

  const target = opts.target;
  if (target !== undefined && !(Number.isInteger(target) && target >= 0 && target < model.numClasses))
    throw new UsageError(`{target}: expected a class index in 0..${model.numClasses - 1}, got ${target}`);
  /** Whether an image predicted as `pred` is done. */
  const criterion = criterionOf(target);
  const done = (img: number, pred: number) => criterion.done(pred, fromLabel[img]);
  // Rows differentiated per image: the k-1 other top classes, or (targeted) just the target.
  const rows = target !== undefined ? 1 : k - 1;

  const steps = new Int32Array(n);
  const status: DeepFoolStatus[] = new Array(n).fill('maxSteps');
  const toLabel = Int32Array.from({ length: n }, (_, i) => order[i * k]);
  const rTot = new Float32Array(n * size);
  let active = Array.from({ length: n }, (_, i) => i).filter((i) => {
    if (!done(i, toLabel[i])) return true;
    status[i] = 'already';
    return false;
  });

  // Every step's gradient rows in one buffer: each step is done with them before the next.
  const scratch: GradientScratch = {};
  for (let step = 0; step < maxSteps && active.length > 0; step++) {
    // Step 0 starts at x itself (r = 0): no copy when every image is still active.
    const xStep =
      step > 0
        ? addScaled(pickImages(x, active), pickRows(rTot, active, size), 1 + overshoot)
        : active.length === n
          ? x
          : pickImages(x, active);
    // Cheap forward check first: only images still on their label pay for gradients. At step 0,
    // x_i = x and the clean prediction is already known.
    const pred = step === 0 ? Int32Array.from(active, (img) => order[img * k]) : await predictLabels(model, xStep);
    const still: number[] = [];
    active.forEach((img, a) => {
      if (done(img, pred[a])) {
        status[img] = 'converged';
        toLabel[img] = pred[a];
      } else still.push(a);
    });
    if (still.length === 0) {
      active = [];
      break;
    }
    const sub = still.length === active.length ? xStep : pickImages(xStep, still);
    const stillImgs = still.map((a) => active[a]);
    const subCand = target !== undefined ? new Int32Array(still.length).fill(target) : pickRows(others, stillImgs, k - 1);
    // Gradients of the logit differences f_k - f_label (targeted: f_target - f_current) directly.
    const reference = Int32Array.from(still, (a, s) => (target !== undefined ? pred[a] : fromLabel[stillImgs[s]]));
    const g = await candidateGradients(model, sub, subCand, rows, { ...opts, reference, scratch });
    const { step: stepRows, zero } = lpStep(g, still.length, rows, norm);
    addRowsInPlace(rTot, stepRows, stillImgs, size);
    const next: number[] = [];
    stillImgs.forEach((img, s) => {
      steps[img]++;
      if (zero[s]) status[img] = 'zeroGradient';
      else next.push(img);
    });
    active = next;
  }

  // Images still active after the cap: check where their final point landed.
  const grow = Math.fround(1 + overshoot);
  const r = rTot.map((t) => t * grow);
  if (active.length > 0) {
    const pred = await predictLabels(model, addScaled(pickImages(x, active), pickRows(r, active, size)));
    active.forEach((img, a) => {
      toLabel[img] = pred[a];
      if (done(img, pred[a])) status[img] = 'converged';
    });
  }
  return { r, steps, status, fromLabel, toLabel };
}

/** total[idx[s]] += rows[s] for each row s (`size` values each). */
function addRowsInPlace(total: Float32Array, rows: Float32Array, idx: number[], size: number): void {
  idx.forEach((img, s) => {
    const into = total.subarray(img * size, (img + 1) * size);
    for (let t = 0, o = s * size; t < size; t++, o++) into[t] += rows[o];
  });
}

/** Per image, the k-1 top-ranked classes (of `order`, k per image) other than the one to leave: DeepFool's candidates. */
function otherClasses(order: Int32Array, fromLabel: Int32Array, k: number): Int32Array {
  const n = fromLabel.length;
  const others = new Int32Array(n * (k - 1));
  for (let i = 0; i < n; i++) {
    const ranked = Array.from(order.subarray(i * k, (i + 1) * k))
      .filter((j) => j !== fromLabel[i])
      .slice(0, k - 1);
    others.set(ranked, i * (k - 1));
  }
  return others;
}

/**
 * ||row||_2 or ||row||_1 (the dual norm q of the attack norm p), in double precision. Four running
 * sums: V8 runs them in parallel where a single one waits on each previous addition.
 */
function dualNorm(row: Float32Array, norm: Norm): number {
  const n = row.length - (row.length % 4);
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let t = 0;
  if (norm === 2) {
    for (; t < n; t += 4) {
      a0 += row[t] * row[t];
      a1 += row[t + 1] * row[t + 1];
      a2 += row[t + 2] * row[t + 2];
      a3 += row[t + 3] * row[t + 3];
    }
    for (; t < row.length; t++) a0 += row[t] * row[t];
    return Math.sqrt(a0 + a1 + a2 + a3);
  }
  for (; t < n; t += 4) {
    a0 += Math.abs(row[t]);
    a1 += Math.abs(row[t + 1]);
    a2 += Math.abs(row[t + 2]);
    a3 += Math.abs(row[t + 3]);
  }
  for (; t < row.length; t++) a0 += Math.abs(row[t]);
  return a0 + a1 + a2 + a3;
}

/**
 * One DeepFool step per image from the gradients w_j of the m x c logit differences f_j (c = k-1
 * candidates; `rows` [m, c, size]): picks the closest linearised boundary and returns the step
 * [m, size]; `zero[s]` marks images where no candidate has a usable gradient. Plain loops over the
 * rows: only one gradient per image is used, and TF.js reductions over all m x c rows cost more than
 * the gradients themselves on small models.
 */
function lpStep(
  g: { logits: Float32Array; rows: Float32Array },
  m: number,
  c: number,
  norm: Norm,
): { step: Float32Array; zero: boolean[] } {
  const size = g.rows.length / (m * c);
  const row = (s: number, j: number) => g.rows.subarray((s * c + j) * size, (s * c + j + 1) * size);
  const step = new Float32Array(m * size);
  const zero: boolean[] = [];
  for (let s = 0; s < m; s++) {
    let best = -1;
    let bestDist = Infinity;
    let bestNorm = 0;
    for (let j = 0; j < c; j++) {
      const nrm = dualNorm(row(s, j), norm);
      if (!(nrm > TINY)) continue;
      const dist = Math.abs(g.logits[s * c + j]) / nrm;
      if (dist < bestDist) {
        bestDist = dist;
        best = j;
        bestNorm = nrm;
      }
    }
    zero.push(best < 0);
    if (best < 0) continue;
    // +1e-4 as in the reference implementation: lands just past the linearised boundary.
    const w = row(s, best);
    const out = step.subarray(s * size, (s + 1) * size);
    if (norm === 2) {
      const coef = (bestDist + 1e-4) / bestNorm;
      for (let t = 0; t < size; t++) out[t] = coef * w[t];
    } else {
      const coef = bestDist + 1e-4;
      for (let t = 0; t < size; t++) out[t] = coef * Math.sign(w[t]);
    }
  }
  return { step, zero };
}
