import type { Classifier } from '../classifier/classifier.js';
import { argmaxRows, forwardLogits, vjp } from '../classifier/compute.js';
import { addClipped, imageSize, type Batch } from '../math/batch.js';
import { l2, projectInPlace, type Norm } from '../math/lp.js';
import { UsageError } from '../errors.js';
import { criterionOf } from './criterion.js';
import { crossEntropy } from './losses.js';

/**
 * Inner attacks for Algorithm 1 other than DeepFool, as the Adversarial Robustness Toolbox lets
 * UniversalPerturbation use them: FGSM and PGD (gradient-sign steps up the cross-entropy of the label,
 * or down that of a target, inside an Lp ball of radius eps), NewtonFool and Carlini-Wagner L2. All
 * keep x + r in [0, 255] and are batched: one forward and one vector-Jacobian product per step for the
 * whole batch.
 */

export interface InnerOptions {
  /**
   * 'fgsm': one step of length eps; 'pgd': `steps` steps of `stepSize`, projected onto the eps ball;
   * 'newtonfool': Newton steps on the label's probability (`stepSize` is its eta, default 0.01);
   * 'cw': Carlini-Wagner L2 (`steps` Adam iterations per constant).
   */
  kind: 'fgsm' | 'pgd' | 'newtonfool' | 'cw';
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
  const criterion = criterionOf(target);
  for (let i = 0; i < n; i++) {
    const { grad } = crossEntropy(logits.subarray(i * k, (i + 1) * k), criterion.classOf(labels[i]));
    for (let j = 0; j < k; j++) dy[i * k + j] = criterion.sign * grad[j];
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

/**
 * Logits at clip(x + r) and the input gradient of the loss whose cotangent on the logits `cotangent`
 * gives (it needs the logits first: a forward pass, then the vector-Jacobian product).
 */
async function gradientAt(
  model: Classifier,
  x: Batch,
  r: Float32Array,
  cotangent: (logits: Float32Array) => Float32Array,
): Promise<{ logits: Float32Array; dx: Float32Array }> {
  const at = addClipped(x, r);
  const logits = await forwardLogits(model, at);
  return { logits, dx: (await vjp(model, at, cotangent(logits))).dx };
}

/** Labels at clip(x + r). */
async function labelsAt(model: Classifier, x: Batch, r: Float32Array): Promise<Int32Array> {
  return argmaxRows(await forwardLogits(model, addClipped(x, r)), model.numClasses);
}

/** r_i := clip(x_i + r_i, 0, 255) - x_i: r is the perturbation actually applied. */
function keepInRange(ri: Float32Array, base: Float32Array, offset: number): void {
  for (let t = 0; t < ri.length; t++) ri[t] = Math.min(255, Math.max(0, base[offset + t] + ri[t])) - base[offset + t];
}

export async function innerAttack(model: Classifier, x: Batch, o: InnerOptions): Promise<InnerResult> {
  if (o.kind === 'newtonfool') return newtonFool(model, x, o);
  if (o.kind === 'cw') return carliniWagnerL2(model, x, o);
  const n = x.n;
  const size = imageSize(x.shape);
  const k = model.numClasses;
  const base = x.data;
  const r = new Float32Array(n * size);
  const steps = o.kind === 'fgsm' ? 1 : (o.steps ?? 10);
  const stepSize = o.kind === 'fgsm' ? o.eps : (o.stepSize ?? (2.5 * o.eps) / steps);
  const done = new Array<boolean>(n).fill(false);
  const reached = reachedFn(o);
  for (let s = 0; s < steps; s++) {
    const g = await gradientAt(model, x, r, (logits) => crossEntropyCotangent(logits, k, o.labels, o.target));
    const pred = argmaxRows(g.logits, k);
    for (let i = 0; i < n; i++) {
      if (o.kind === 'pgd' && reached(pred[i], i)) done[i] = true; // PGD stops moving an image once it is fooled
      if (done[i]) continue;
      const ri = r.subarray(i * size, (i + 1) * size);
      const step = steepestInPlace(g.dx.slice(i * size, (i + 1) * size), o.norm, stepSize);
      for (let t = 0; t < size; t++) ri[t] += step[t];
      projectInPlace(ri, o.norm, o.eps);
      keepInRange(ri, base, i * size);
    }
  }
  const pred = await labelsAt(model, x, r);
  return { r, fooled: Array.from({ length: n }, (_, i) => reached(pred[i], i)) };
}

function reachedFn(o: { labels: Int32Array; target?: number }): (pred: number, i: number) => boolean {
  const criterion = criterionOf(o.target);
  return (pred, i) => criterion.done(pred, o.labels[i]);
}

/**
 * NewtonFool (Jang, Wu and Jha, ACSAC 2017), as ART implements it: Newton steps that lower the softmax
 * probability p_y of the label, each of size delta = min(eta ||x_0||_2 ||grad p_y||_2, p_y - 1/K), until
 * the label changes or `steps` (default 100) run out. Untargeted; no radius (the outer projection bounds v).
 */
async function newtonFool(model: Classifier, x: Batch, o: InnerOptions): Promise<InnerResult> {
  if (o.target !== undefined) throw new UsageError('{inner} newtonfool: untargeted only (use deepfool, fgsm, pgd or cw with {target})');
  const n = x.n;
  const size = imageSize(x.shape);
  const k = model.numClasses;
  const base = x.data;
  const r = new Float32Array(n * size);
  const eta = o.stepSize ?? 0.01;
  const norms0 = Array.from({ length: n }, (_, i) => l2(base.subarray(i * size, (i + 1) * size)));
  const done = new Array<boolean>(n).fill(false);
  const probs: number[] = new Array(n).fill(0);
  for (let s = 0; s < (o.steps ?? 100) && done.some((d) => !d); s++) {
    // d p_y / d logits = p_y (onehot(y) - p): the cotangent of the label's probability.
    const g = await gradientAt(model, x, r, (logits) => {
      const dy = new Float32Array(n * k);
      for (let i = 0; i < n; i++) {
        const row = logits.subarray(i * k, (i + 1) * k);
        const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
        const e = Array.from(row, (v) => Math.exp(v - max));
        const sum = e.reduce((a, b) => a + b, 0);
        const y = o.labels[i];
        probs[i] = e[y] / sum;
        for (let j = 0; j < k; j++) dy[i * k + j] = probs[i] * ((j === y ? 1 : 0) - e[j] / sum);
      }
      return dy;
    });
    const pred = argmaxRows(g.logits, k);
    for (let i = 0; i < n; i++) {
      if (pred[i] !== o.labels[i]) done[i] = true;
      if (done[i]) continue;
      const grad = g.dx.subarray(i * size, (i + 1) * size);
      const gn = l2(grad);
      if (gn === 0) {
        done[i] = true;
        continue;
      }
      const delta = Math.min(eta * norms0[i] * gn, Math.max(0, probs[i] - 1 / k));
      const ri = r.subarray(i * size, (i + 1) * size);
      for (let t = 0; t < size; t++) ri[t] -= (delta * grad[t]) / (gn * gn);
      keepInRange(ri, base, i * size);
    }
  }
  const pred = await labelsAt(model, x, r);
  return { r, fooled: Array.from({ length: n }, (_, i) => pred[i] !== o.labels[i]) };
}

/**
 * Carlini and Wagner's L2 attack (S&P 2017), batched: minimise ||delta||_2^2 + c f(x + delta) in tanh
 * space (images in [0, 1] units, as the paper and ART), f = max(Z_y - max_{j != y} Z_j, -kappa)
 * (targeted: max(max_{j != t} Z_j - Z_t, -kappa)), Adam (lr 0.01) for `steps` iterations (default 10)
 * per constant, and a binary search over c per image (5 rounds from 0.01, x10 while it fails). The
 * smallest successful perturbation is kept; an image never fooled keeps the last one, marked not fooled.
 */
async function carliniWagnerL2(model: Classifier, x: Batch, o: InnerOptions): Promise<InnerResult> {
  const n = x.n;
  const size = imageSize(x.shape);
  const k = model.numClasses;
  const kappa = 0;
  const base = x.data;
  const x01 = Float32Array.from(base, (p) => Math.min(1, Math.max(0, p / 255)));
  const w0 = Float32Array.from(x01, (p) => Math.atanh((2 * p - 1) * 0.999999));
  const best = new Float32Array(n * size);
  const bestL2 = new Array<number>(n).fill(Infinity);
  const c = new Array<number>(n).fill(0.01);
  const lo = new Array<number>(n).fill(0);
  const hi = new Array<number>(n).fill(Infinity);
  const reached = reachedFn(o);
  const criterion = criterionOf(o.target);
  for (let round = 0; round < 5; round++) {
    const w = w0.slice();
    const m = new Float32Array(w.length);
    const v = new Float32Array(w.length);
    const succeeded = new Array<boolean>(n).fill(false);
    const r = new Float32Array(n * size);
    for (let it = 1; it <= (o.steps ?? 10); it++) {
      for (let t = 0; t < w.length; t++) r[t] = (255 * (Math.tanh(w[t]) + 1)) / 2 - base[t];
      // Cotangent of c * f on the logits: +c at the label (or the best other class when targeted), -c at the rival; zero where f sits at -kappa.
      const g = await gradientAt(model, x, r, (logits) => {
        const dy = new Float32Array(n * k);
        for (let i = 0; i < n; i++) {
          const row = logits.subarray(i * k, (i + 1) * k);
          const y = criterion.classOf(o.labels[i]);
          let other = -1;
          for (let j = 0; j < k; j++) if (j !== y && (other < 0 || row[j] > row[other])) other = j;
          const f = criterion.sign * (row[y] - row[other]);
          if (f <= -kappa) continue;
          dy[i * k + y] = criterion.sign * c[i];
          dy[i * k + other] = -criterion.sign * c[i];
        }
        return dy;
      });
      const pred = argmaxRows(g.logits, k);
      for (let i = 0; i < n; i++) {
        const ri = r.subarray(i * size, (i + 1) * size);
        if (reached(pred[i], i)) {
          succeeded[i] = true;
          const d = l2(ri);
          if (d < bestL2[i]) {
            bestL2[i] = d;
            best.set(ri, i * size);
          }
        }
      }
      // Adam on w: d/dw [||x01' - x01||^2 + c f] = (2 (x01' - x01) + 255 df/dx) * (1 - tanh^2 w) / 2.
      const b1 = 0.9;
      const b2 = 0.999;
      for (let t = 0; t < w.length; t++) {
        const th = Math.tanh(w[t]);
        const grad = (2 * (r[t] / 255) + 255 * g.dx[t]) * ((1 - th * th) / 2);
        m[t] = b1 * m[t] + (1 - b1) * grad;
        v[t] = b2 * v[t] + (1 - b2) * grad * grad;
        w[t] -= (0.01 * (m[t] / (1 - b1 ** it))) / (Math.sqrt(v[t] / (1 - b2 ** it)) + 1e-8);
      }
    }
    for (let i = 0; i < n; i++) {
      if (succeeded[i]) {
        hi[i] = Math.min(hi[i], c[i]);
        c[i] = (lo[i] + hi[i]) / 2;
      } else {
        lo[i] = Math.max(lo[i], c[i]);
        c[i] = hi[i] < Infinity ? (lo[i] + hi[i]) / 2 : c[i] * 10;
      }
      if (bestL2[i] === Infinity) best.set(r.subarray(i * size, (i + 1) * size), i * size);
    }
  }
  return { r: best, fooled: bestL2.map((d) => d < Infinity) };
}
