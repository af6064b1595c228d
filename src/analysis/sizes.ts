import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import type { ImageSource } from '../data/source.js';
import { Rng } from '../math/random.js';
import { craft, type Method } from '../attacks/methods.js';
import type { AttackSettings } from '../attacks/methods.js';
import { evaluatePerturbation, foolingRate, predictSet } from '../model/scoring.js';
import type { TopLevelSpec } from '../report/plots.js';

/**
 * How small can X be (the paper's Fig. 6): the same method and settings on nested seeded subsets of
 * X of growing size, each perturbation scored on the same validation images.
 */

export interface SizePoint {
  size: number;
  valFoolingRate: number;
  xFoolingRate: number;
  passes: number;
  seconds: number;
}

export const DEFAULT_SIZES = [50, 100, 250, 500, 1000, 2000, 5000, 10000];

export async function sizeSweep(
  model: Classifier,
  X: ImageSet,
  V: ImageSource,
  method: Method,
  options: AttackSettings,
  opts: { sizes?: number[]; seed?: number; onPoint?: (p: SizePoint) => void; remote?: RemoteSweep } = {},
): Promise<SizePoint[]> {
  const sizes = [...new Set((opts.sizes ?? DEFAULT_SIZES).filter((n) => n <= X.size).concat(opts.sizes ? [] : [X.size]))].sort(
    (a, b) => a - b,
  );
  // Nested subsets: the first n images of one seeded order, so a bigger X contains every smaller one.
  const order = new Rng(opts.seed ?? 0).permutation(X.size);
  if (opts.remote)
    return remoteSweep(
      opts.remote,
      sizes.map((n) => X.subset(order.slice(0, n))),
      opts.onPoint,
    );
  const cleanV = await predictSet(model, V, null);
  const points: SizePoint[] = [];
  for (const n of sizes) {
    const res = await craft(model, X.subset(order.slice(0, n)), method, options);
    try {
      const ev = await evaluatePerturbation(model, V, res.v, { cleanPred: cleanV });
      const p = { size: n, valFoolingRate: ev.foolingRate, xFoolingRate: res.foolingRate, passes: res.passes, seconds: res.seconds };
      points.push(p);
      opts.onPoint?.(p);
    } finally {
      res.v.dispose();
    }
  }
  return points;
}

/** Where a sweep's points run elsewhere (on workers): every crafting run at once, then every v scored in one pass. */
export interface RemoteSweep {
  craft(sets: ImageSet[]): Promise<{ v: Float32Array; foolingRate: number; passes: number; seconds: number }[]>;
  /** Top-1 labels of the validation images: clean, then with each v. */
  labels(vs: Float32Array[]): Promise<Int32Array[]>;
}

/** The points, crafted and scored remotely: the same figures as locally (same subsets, settings and batches). */
async function remoteSweep(remote: RemoteSweep, sets: ImageSet[], onPoint?: (p: SizePoint) => void): Promise<SizePoint[]> {
  const runs = await remote.craft(sets);
  const [clean, ...advs] = await remote.labels(runs.map((r) => r.v));
  return runs.map((r, i) => {
    const p = {
      size: sets[i].size,
      valFoolingRate: foolingRate(clean, advs[i]),
      xFoolingRate: r.foolingRate,
      passes: r.passes,
      seconds: r.seconds,
    };
    onPoint?.(p);
    return p;
  });
}

export function sizeSpec(points: SizePoint[], title: string): TopLevelSpec {
  const values = points.flatMap((p) => [
    { size: p.size, rate: p.valFoolingRate, on: 'validation images' },
    { size: p.size, rate: p.xFoolingRate, on: 'X itself' },
  ]);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    width: 420,
    height: 260,
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'size', type: 'quantitative', title: 'number of images in X', scale: { type: 'log' } },
      y: { field: 'rate', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1] }, axis: { format: '%' } },
      color: { field: 'on', type: 'nominal', title: null },
    },
  } as TopLevelSpec;
}
