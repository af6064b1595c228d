import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSource } from '../data/source.js';
import { lpNorm, type Norm } from '../math/lp.js';
import { noiseOfNorm } from '../math/noise.js';
import { predictSet, foolingRate } from '../evaluation/scoring.js';
import { localExecutor, type Executor, type SetPlace } from '../run/executor.js';
import { predictLabels } from '../classifier/compute.js';
import { addClipped, perturbedBytes } from '../math/batch.js';
import { deepfool } from '../attacks/deepfool.js';
import type { TopLevelSpec } from '../report/plots.js';

/**
 * Fooling rate against norm (the paper's Fig. 8 comparison): the universal perturbation scaled to
 * each radius, against seeded random noise of the same norm (uniform random signs and Gaussian, several
 * draws: mean, min, max), and optionally per-image DeepFool perturbations and their sum.
 */

export interface SweepPoint {
  kind: 'universal' | 'random signs' | 'gaussian' | 'per-image DeepFool' | 'sum of DeepFool perturbations';
  radius: number;
  mean: number;
  min: number;
  max: number;
  draws: number;
}

export interface NormSweep {
  norm: Norm;
  /** ||v|| in the swept norm. */
  vNorm: number;
  images: number;
  points: SweepPoint[];
}

export const DEFAULT_FACTORS = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2];

export async function normSweep(
  model: Classifier,
  set: ImageSource,
  v: tf.Tensor3D,
  norm: Norm,
  opts: {
    factors?: number[];
    draws?: number;
    seed?: number;
    deepfool?: boolean;
    onPoint?: (p: SweepPoint) => void;
    onBatch?: (done: number) => void;
    /** Where the sweep's perturbations are scored, in batches of 32 (default: here), and where the set is for a worker. */
    exec?: Executor;
    place?: SetPlace;
  } = {},
): Promise<NormSweep> {
  const factors = opts.factors ?? DEFAULT_FACTORS;
  const draws = opts.draws ?? 3;
  const seed = opts.seed ?? 1000;
  const vNorm = lpNorm(v, norm);
  // Every perturbation of the sweep, scored in ONE pass over the set (a streamed set is decoded once).
  type Curve = { kind: SweepPoint['kind']; radius: number; first: number; draws: number };
  const curves: Curve[] = [];
  const perturbations: Float32Array[] = [];
  const push = (t: tf.Tensor3D) => {
    perturbations.push(t.dataSync() as Float32Array);
    t.dispose();
  };
  for (const f of factors) {
    const radius = vNorm * f;
    curves.push({ kind: 'universal', radius, first: perturbations.length, draws: 1 });
    push(tf.mul(v, f) as tf.Tensor3D);
    for (const kind of ['random signs', 'gaussian'] as const) {
      curves.push({ kind, radius, first: perturbations.length, draws });
      for (let d = 0; d < draws; d++)
        push(noiseOfNorm(kind === 'gaussian' ? 'gaussian' : 'sign', model.inputShape, norm, radius, seed + d));
    }
  }
  const [clean, ...preds] = await (opts.exec ?? localExecutor).labels({ model, set, place: opts.place }, perturbations, {
    batchSize: 32,
    onBatch: opts.onBatch,
  });
  const points: SweepPoint[] = [];
  const add = (p: SweepPoint) => {
    points.push(p);
    opts.onPoint?.(p);
  };
  for (const c of curves) {
    const rates = preds.slice(c.first, c.first + c.draws).map((p) => foolingRate(clean, p));
    add({
      kind: c.kind,
      radius: c.radius,
      mean: rates.reduce((a, b) => a + b, 0) / c.draws,
      min: Math.min(...rates),
      max: Math.max(...rates),
      draws: c.draws,
    });
  }
  if (opts.deepfool)
    for (const p of await deepfoolCurves(
      model,
      set,
      norm,
      factors.map((f) => vNorm * f),
      clean,
    ))
      add(p);
  return { norm, vNorm, images: set.size, points };
}

/**
 * The paper's other two curves of Fig. 8: each image's own DeepFool perturbation rescaled to the radius
 * (a per-image attack, not universal), and the sum of all of them rescaled and added to every image.
 * One DeepFool pass over the set, batch by batch (the perturbations are never all held at once).
 */
async function deepfoolCurves(model: Classifier, set: ImageSource, norm: Norm, radii: number[], clean: Int32Array): Promise<SweepPoint[]> {
  const [h, w, c] = model.inputShape;
  const fooled = new Array<number>(radii.length).fill(0);
  let sum = tf.zeros([h, w, c]) as tf.Tensor3D;
  for await (const b of set.batches(16)) {
    const idx = b.items.map((_, j) => b.start + j);
    const x = perturbedBytes(b.pixels, model.inputShape, null);
    const df = await deepfool(model, x, { norm });
    const r = tf.tensor4d(df.r, [idx.length, h, w, c]);
    const unitTensor = tf.tidy(() => {
      const flat = r.reshape([idx.length, -1]);
      const size = norm === 2 ? tf.norm(flat, 2, 1, true) : tf.max(tf.abs(flat), 1, true);
      return tf.div(flat, tf.maximum(size, 1e-12));
    });
    const unit = unitTensor.dataSync() as Float32Array;
    unitTensor.dispose();
    const next = tf.tidy(() => tf.add(sum, tf.sum(r, 0)) as tf.Tensor3D);
    sum.dispose();
    sum = next;
    r.dispose();
    for (const [k, radius] of radii.entries()) {
      const pred = await predictLabels(model, addClipped(x, unit, radius));
      pred.forEach((p, j) => {
        if (p !== clean[idx[j]]) fooled[k]++;
      });
    }
  }
  const points: SweepPoint[] = radii.map((radius, k) => ({
    kind: 'per-image DeepFool',
    radius,
    mean: fooled[k] / set.size,
    min: fooled[k] / set.size,
    max: fooled[k] / set.size,
    draws: 1,
  }));
  const sumNorm = lpNorm(sum, norm);
  for (const radius of radii) {
    const scaled = tf.mul(sum, radius / Math.max(sumNorm, 1e-12)) as tf.Tensor3D;
    const r = foolingRate(clean, await predictSet(model, set, scaled).finally(() => scaled.dispose()));
    points.push({ kind: 'sum of DeepFool perturbations', radius, mean: r, min: r, max: r, draws: 1 });
  }
  sum.dispose();
  return points;
}

/** Line chart: fooling rate against radius, random noise with its min-max band. */
export function sweepSpec(s: NormSweep, title: string): TopLevelSpec {
  const unit = s.norm === 2 ? 'L2' : 'Linf';
  // One colour per kind, and only the kinds drawn in the legend (an explicit domain lists them all).
  const palette: [string, string][] = [
    ['universal', '#d62728'],
    ['random signs', '#1f77b4'],
    ['gaussian', '#7f7f7f'],
    ['per-image DeepFool', '#2ca02c'],
    ['sum of DeepFool perturbations', '#9467bd'],
  ];
  const drawn = palette.filter(([kind]) => s.points.some((p) => p.kind === kind));
  const colors = { domain: drawn.map(([k]) => k), range: drawn.map(([, c]) => c) };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: s.points },
    width: 420,
    height: 260,
    encoding: {
      x: { field: 'radius', type: 'quantitative', title: `${unit} norm of the perturbation (pixels, [0, 255] images)` },
    },
    layer: [
      // The bands (min-max over the draws) stay out of the legend: its pale symbols would not match the lines.
      {
        mark: { type: 'area', opacity: 0.2 },
        encoding: {
          y: { field: 'min', type: 'quantitative' },
          y2: { field: 'max' },
          fill: { field: 'kind', type: 'nominal', scale: colors, legend: null },
        },
      },
      {
        mark: { type: 'line', point: true },
        encoding: {
          y: { field: 'mean', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1] }, axis: { format: '%' } },
          color: {
            field: 'kind',
            type: 'nominal',
            title: null,
            scale: colors,
            legend: { labelLimit: 260, symbolType: 'stroke', symbolStrokeWidth: 3 },
          },
        },
      },
      { mark: { type: 'rule', strokeDash: [4, 4], color: 'black' }, encoding: { x: { datum: s.vNorm } } },
      {
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, dy: 4, text: 'norm of v' },
        encoding: { x: { datum: s.vNorm }, y: { datum: 1 } },
      },
    ],
    resolve: { scale: { fill: 'independent' }, legend: { fill: 'independent' } },
  } as TopLevelSpec;
}
