import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import type { ImageSource } from '../data/source.js';
import { Rng } from '../math/random.js';
import { craft, type Method } from '../attacks/methods.js';
import type { AttackSettings } from '../attacks/methods.js';
import { evaluatePerturbation, foolingRate, predictSet } from '../evaluation/scoring.js';
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

/**
 * The sweep, once per seed (seed, seed + 1, ...): each seed draws its own nested subsets and seeds its
 * attack, so the spread over seeds shows how much one run's curve owes to the draw of X.
 */
export async function sizeSweep(
  model: Classifier,
  X: ImageSet,
  V: ImageSource,
  method: Method,
  options: AttackSettings,
  opts: { sizes?: number[]; seed?: number; seeds?: number; onRun?: (r: SizeRun) => void; remote?: RemoteSweep } = {},
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
  const runs = opts.remote ? await remoteSweep(opts.remote, plan, opts.onRun) : await localSweep(model, V, method, plan, opts.onRun);
  return sizes.map((size) =>
    sizePoint(
      size,
      runs.filter((r) => r.size === size),
      V.size,
    ),
  );
}

type PlannedRun = { size: number; seed: number; X: ImageSet; settings: AttackSettings };

async function localSweep(
  model: Classifier,
  V: ImageSource,
  method: Method,
  plan: PlannedRun[],
  onRun?: (r: SizeRun) => void,
): Promise<SizeRun[]> {
  const cleanV = await predictSet(model, V, null);
  const runs: SizeRun[] = [];
  for (const { size, seed, X, settings } of plan) {
    const res = await craft(model, X, method, settings);
    try {
      const ev = await evaluatePerturbation(model, V, res.v, { cleanPred: cleanV });
      const r = { size, seed, valFoolingRate: ev.foolingRate, xFoolingRate: res.foolingRate, passes: res.passes, seconds: res.seconds };
      runs.push(r);
      onRun?.(r);
    } finally {
      res.v.dispose();
    }
  }
  return runs;
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

/** Where a sweep's points run elsewhere (on workers): every crafting run at once, then every v scored in one pass. */
export interface RemoteSweep {
  craft(
    sets: { X: ImageSet; options: AttackSettings }[],
  ): Promise<{ v: Float32Array; foolingRate: number; passes: number; seconds: number }[]>;
  /** Top-1 labels of the validation images: clean, then with each v. */
  labels(vs: Float32Array[]): Promise<Int32Array[]>;
}

/** The runs, crafted and scored remotely: the same figures as locally (same subsets, settings and batches). */
async function remoteSweep(remote: RemoteSweep, plan: PlannedRun[], onRun?: (r: SizeRun) => void): Promise<SizeRun[]> {
  const crafted = await remote.craft(plan.map((p) => ({ X: p.X, options: p.settings })));
  const [clean, ...advs] = await remote.labels(crafted.map((r) => r.v));
  return crafted.map((r, i) => {
    const run = {
      size: plan[i].size,
      seed: plan[i].seed,
      valFoolingRate: foolingRate(clean, advs[i]),
      xFoolingRate: r.foolingRate,
      passes: r.passes,
      seconds: r.seconds,
    };
    onRun?.(run);
    return run;
  });
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
