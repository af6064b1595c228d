import * as tf from '@tensorflow/tfjs';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { lpNorm, type Norm } from '../math/lp.js';
import { noiseOfNorm } from '../math/noise.js';
import { predictSet, foolingRate } from './fooling.js';
import type { TopLevelSpec } from '../report/plots.js';

/**
 * Fooling rate against norm (the paper's Fig. 8 comparison): the universal perturbation scaled to
 * each radius, against seeded random noise of the same norm (uniform random signs and Gaussian, several
 * draws: mean, min, max).
 */

export interface SweepPoint {
  kind: 'universal' | 'random signs' | 'gaussian';
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

export async function normSweep(model: Classifier, set: ImageSet, v: tf.Tensor3D, norm: Norm, opts: { factors?: number[]; draws?: number; seed?: number; onPoint?: (p: SweepPoint) => void } = {}): Promise<NormSweep> {
  const factors = opts.factors ?? DEFAULT_FACTORS;
  const draws = opts.draws ?? 3;
  const seed = opts.seed ?? 1000;
  const vNorm = lpNorm(v, norm);
  const clean = await predictSet(model, set, null);
  const rateOf = async (p: tf.Tensor3D) => foolingRate(clean, await predictSet(model, set, p));
  const points: SweepPoint[] = [];
  const add = (p: SweepPoint) => {
    points.push(p);
    opts.onPoint?.(p);
  };
  for (const f of factors) {
    const radius = vNorm * f;
    const scaled = tf.mul(v, f) as tf.Tensor3D;
    const r = await rateOf(scaled).finally(() => scaled.dispose());
    add({ kind: 'universal', radius, mean: r, min: r, max: r, draws: 1 });
    for (const kind of ['random signs', 'gaussian'] as const) {
      const rates: number[] = [];
      for (let d = 0; d < draws; d++) {
        const noise = noiseOfNorm(kind === 'gaussian' ? 'gaussian' : 'sign', model.inputShape, norm, radius, seed + d);
        rates.push(await rateOf(noise).finally(() => noise.dispose()));
      }
      add({ kind, radius, mean: rates.reduce((a, b) => a + b, 0) / draws, min: Math.min(...rates), max: Math.max(...rates), draws });
    }
  }
  return { norm, vNorm, images: set.size, points };
}

/** Line chart: fooling rate against radius, random noise with its min-max band. */
export function sweepSpec(s: NormSweep, title: string): TopLevelSpec {
  const unit = s.norm === 2 ? 'L2' : 'Linf';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: s.points },
    width: 420,
    height: 260,
    encoding: {
      x: { field: 'radius', type: 'quantitative', title: `${unit} norm of the perturbation (pixels, [0, 255] images)` },
      color: { field: 'kind', type: 'nominal', title: null, scale: { domain: ['universal', 'random signs', 'gaussian'], range: ['#d62728', '#1f77b4', '#7f7f7f'] } },
    },
    layer: [
      { mark: { type: 'area', opacity: 0.2 }, encoding: { y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } } },
      { mark: { type: 'line', point: true }, encoding: { y: { field: 'mean', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1] }, axis: { format: '%' } } } },
      { mark: { type: 'rule', strokeDash: [4, 4], color: 'black' }, encoding: { x: { datum: s.vNorm } } },
    ],
  } as TopLevelSpec;
}
