import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import type { ImageSource } from '../data/source.js';
import { Rng } from '../math/random.js';
import type { AttackSettings, Method } from '../attacks/methods.js';
import { foolingRate } from '../evaluation/scoring.js';
import { localExecutor, type Executor, type SetPlace } from '../run/executor.js';
import type { TopLevelSpec } from '../report/plots.js';
import { wilsonInterval } from '../math/interval.js';

/**
 * How small can X be (the paper's Fig. 6): the same method and settings on nested seeded subsets of
 * X of growing size, each perturbation scored on the same validation images.
 */

/** One crafting run of the sweep: a size of X and a seed. */
export interface SizeRun {
  size: number;
  seed: number;
  valFoolingRate: number;
  xFoolingRate: number;
  passes: number;
  seconds: number;
}

/** A size of X over its seeds: mean rates, the 95% Wilson interval of the validation rate, and the spread over seeds. */
export interface SizePoint {
  size: number;
  /** Mean over the seeds of the validation fooling rate. */
  valFoolingRate: number;
  /** 95% Wilson interval of the validation rate over the validation images (of one run; the seeds' spread is apart). */
  valInterval: [number, number];
  xFoolingRate: number;
  /** Mean passes over the seeds. */
  passes: number;
  /** Crafting time, all seeds together. */
  seconds: number;
  /** With two or more seeds: the sample standard deviation and range of the validation rate over them. */
  spread: { seeds: number; sd: number; min: number; max: number } | null;
  runs: SizeRun[];
}

export const DEFAULT_SIZES = [50, 100, 250, 500, 1000, 2000, 5000, 10000];

/** How a sweep runs: where (default here; its sets' places for a queue's workers) and who hears each run. */
export interface SweepControl {
  sizes?: number[];
  seed?: number;
  seeds?: number;
  exec?: Executor;
  places?: { x?: SetPlace; v?: SetPlace };
  /** Told each crafting run as it is made (on a queue: all at once, when the workers are done). */
  onCrafted?: (r: Omit<SizeRun, 'valFoolingRate'>) => void;
  /** Told each run as it is scored on the validation images. */
  onRun?: (r: SizeRun) => void;
}

/**
 * The sweep, once per seed (seed, seed + 1, ...): each seed draws its own nested subsets and seeds its
 * attack, so the spread over seeds shows how much one run's curve owes to the draw of X. Every run is
 * crafted first, then all the v are scored in one pass over the validation images.
 */
export async function sizeSweep(
  model: Classifier,
  X: ImageSet,
  V: ImageSource,
  method: Method,
  options: AttackSettings,
  opts: SweepControl = {},
): Promise<SizePoint[]> {
  const sizes = [...new Set((opts.sizes ?? DEFAULT_SIZES).filter((n) => n <= X.size).concat(opts.sizes ? [] : [X.size]))].sort(
    (a, b) => a - b,
  );
  const first = opts.seed ?? 0;
  const plan = Array.from({ length: opts.seeds ?? 1 }, (_, k) => first + k).flatMap((seed) => {
    // Nested subsets: the first n images of one seeded order, so a bigger X contains every smaller one.
    const order = new Rng(seed).permutation(X.size);
    const settings = { ...options, seed: ((options as { seed?: number }).seed ?? 0) + (seed - first) } as AttackSettings;
    return sizes.map((size) => ({ size, seed, X: X.subset(order.slice(0, size)), settings }));
  });
  const exec = opts.exec ?? localExecutor;
  const crafted = await exec.craft(
    { model, place: opts.places?.x },
    plan.map((p) => ({ X: p.X, options: p.settings })),
    method,
    {
      onRun: (i, r) =>
        opts.onCrafted?.({ size: plan[i].size, seed: plan[i].seed, xFoolingRate: r.foolingRate, passes: r.passes, seconds: r.seconds }),
    },
  );
  const [clean, ...advs] = await exec.labels(
    { model, set: V, place: opts.places?.v },
    crafted.map((r) => r.v),
  );
  const runs = crafted.map((r, i) => {
    const run = {
      size: plan[i].size,
      seed: plan[i].seed,
      valFoolingRate: foolingRate(clean, advs[i]),
      xFoolingRate: r.foolingRate,
      passes: r.passes,
      seconds: r.seconds,
    };
    opts.onRun?.(run);
    return run;
  });
  return sizes.map((size) =>
    sizePoint(
      size,
      runs.filter((r) => r.size === size),
      V.size,
    ),
  );
}

/** The runs of one size as a point: means, interval and spread. */
export function sizePoint(size: number, runs: SizeRun[], valImages: number): SizePoint {
  const mean = (f: (r: SizeRun) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
  const val = mean((r) => r.valFoolingRate);
  const rates = runs.map((r) => r.valFoolingRate);
  const sd = runs.length > 1 ? Math.sqrt(rates.reduce((a, x) => a + (x - val) ** 2, 0) / (runs.length - 1)) : 0;
  return {
    size,
    valFoolingRate: val,
    valInterval: wilsonInterval(val, valImages),
    xFoolingRate: mean((r) => r.xFoolingRate),
    passes: mean((r) => r.passes),
    seconds: runs.reduce((a, r) => a + r.seconds, 0),
    spread: runs.length > 1 ? { seeds: runs.length, sd, min: Math.min(...rates), max: Math.max(...rates) } : null,
    runs,
  };
}

/** Fooling rate against |X| (log axis): validation with its 95% interval (and each seed's run as a dot), X itself. */
export function sizeSpec(points: SizePoint[], title: string): TopLevelSpec {
  const values = points.flatMap((p) => [
    { size: p.size, rate: p.valFoolingRate, lo: p.valInterval[0], hi: p.valInterval[1], on: 'validation images (95% CI)' },
    { size: p.size, rate: p.xFoolingRate, on: 'X itself' },
  ]);
  const seeds = points.some((p) => p.spread)
    ? points.flatMap((p) => p.runs.map((r) => ({ size: r.size, rate: r.valFoolingRate, on: 'validation, each seed' })))
    : [];
  const x = { field: 'size', type: 'quantitative', title: 'number of images in X', scale: { type: 'log' } };
  const y = { field: 'rate', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1] }, axis: { format: '%' } };
  const color = { field: 'on', type: 'nominal', title: null, legend: { labelLimit: 260 } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: 420,
    height: 260,
    layer: [
      { data: { values }, mark: { type: 'line', point: true }, encoding: { x, y, color } },
      {
        data: { values: values.filter((v) => v.lo !== undefined) },
        mark: { type: 'rule' },
        encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color },
      },
      ...(seeds.length ? [{ data: { values: seeds }, mark: { type: 'point', size: 18, opacity: 0.6 }, encoding: { x, y, color } }] : []),
    ],
  } as TopLevelSpec;
}
