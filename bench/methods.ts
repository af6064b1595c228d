/**
 * Head-to-head of the crafting methods (`npm run bench:methods`): on MobileNet v1 0.25 with the same
 * crafting images X and validation images V, each method runs pass after pass until a time budget;
 * after every pass v is evaluated on V (evaluation time not counted). Reports, per norm, the crafting
 * time each method needs to reach a validation fooling rate, and the best rate within the budget.
 * Writes bench/results/methods.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/backend.js';
import { loadClassifier } from '../src/model/load.js';
import { ALGORITHM1_VARIANTS, computeUniversal, UNIVERSAL_DEFAULTS } from '../src/attacks/universal.js';
import { computeSgdUniversal, SGD_DEFAULTS } from '../src/attacks/sgd.js';
import type { PassRecord, RunControl, UniversalResult } from '../src/attacks/passes.js';
import { evaluatePerturbation } from '../src/analysis/fooling.js';
import { AbortedError } from '../src/errors.js';
import { loadSet } from '../src/pipeline.js';
import { assetsDir } from '../src/paths.js';
import type { Norm } from '../src/math/lp.js';
import type { Classifier } from '../src/model/classifier.js';
import type { ImageSet } from '../src/data/dataset.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const images = Number(args.get('images') ?? 500);
const valImages = Number(args.get('val') ?? 500);
const budget = Number(args.get('budget') ?? 120);
const goal = Number(args.get('goal') ?? 0.3);

interface Curve {
  method: string;
  norm: string;
  points: { seconds: number; pass: number; valFoolingRate: number }[];
}

type Runner = (model: Classifier, X: ImageSet, norm: Norm, xi: number, ctl: RunControl) => Promise<UniversalResult>;

const methods: [string, Runner][] = [
  ['Algorithm 1, accumulated (default)', (m, X, norm, xi, ctl) => computeUniversal(m, X, { ...UNIVERSAL_DEFAULTS, norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
  ['Algorithm 1, the paper\'s variant', (m, X, norm, xi, ctl) => computeUniversal(m, X, { ...UNIVERSAL_DEFAULTS, ...ALGORITHM1_VARIANTS.paper, norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
  ['Algorithm 1, FGSM inside', (m, X, norm, xi, ctl) => computeUniversal(m, X, { ...UNIVERSAL_DEFAULTS, inner: 'fgsm', norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
  ['Algorithm 1, PGD inside (10 steps)', (m, X, norm, xi, ctl) => computeUniversal(m, X, { ...UNIVERSAL_DEFAULTS, inner: 'pgd', norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
  ['SGD-UAP, sign steps', (m, X, norm, xi, ctl) => computeSgdUniversal(m, X, { ...SGD_DEFAULTS, norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
  ['SGD-UAP, Adam', (m, X, norm, xi, ctl) => computeSgdUniversal(m, X, { ...SGD_DEFAULTS, optimizer: 'adam', norm, xi, delta: 0, maxPasses: 1000 }, ctl)],
];

async function race(model: Classifier, X: ImageSet, V: ImageSet, name: string, run: Runner, norm: Norm, xi: number): Promise<Curve> {
  const curve: Curve = { method: name, norm: norm === 2 ? `L2 ${xi}` : `Linf ${xi}`, points: [] };
  const stop = new AbortController();
  let spent = 0;
  const onPass = async (r: PassRecord, v: tf.Tensor3D) => {
    spent += r.seconds;
    const ev = await evaluatePerturbation(model, V, v);
    curve.points.push({ seconds: spent, pass: r.pass, valFoolingRate: ev.foolingRate });
    process.stdout.write(`  ${name}, ${curve.norm}: pass ${r.pass}, ${spent.toFixed(0)} s, val fooling rate ${(ev.foolingRate * 100).toFixed(1)}%\n`);
    if (spent >= budget) stop.abort();
  };
  try {
    const res = await run(model, X, norm, xi, { onPass, signal: stop.signal });
    res.v.dispose();
  } catch (e) {
    if (!(e instanceof AbortedError)) throw e;
  }
  return curve;
}

/** Per curve: crafting seconds to the goal rate, and the best rate, counting only passes that ended within the budget. */
export function summarize(curves: Curve[], budget: number, goal: number): Record<string, string>[] {
  return curves.map((c) => {
    const inBudget = c.points.filter((p) => p.seconds <= budget);
    const reached = inBudget.find((p) => p.valFoolingRate >= goal);
    const best = inBudget.reduce((b, p) => (p.valFoolingRate > b.valFoolingRate ? p : b), { seconds: 0, pass: 0, valFoolingRate: 0 });
    return {
      norm: c.norm, method: c.method,
      [`seconds to ${goal * 100}% (val)`]: reached ? reached.seconds.toFixed(0) : `not in ${budget} s`,
      [`best val rate in ${budget} s`]: best.pass ? `${(best.valFoolingRate * 100).toFixed(1)}% (pass ${best.pass}, ${best.seconds.toFixed(0)} s)` : 'no pass ended in time',
    };
  });
}

async function main() {
  const assets = assetsDir(args.get('assets'));
  if (!existsSync(assets)) {
    console.log(`bench:methods: skipped, assets folder ${assets} not found (pass --assets=DIR or set UAP_ASSETS)`);
    return;
  }
  const backend = await initBackend(args.get('backend'));
  const model = await loadClassifier('mobilenet_v1_0.25_224', { assets });
  const X = await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: images, assets, what: 'X' });
  const V = await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: valImages, assets, what: 'V' });
  console.log(`backend ${backend} (${model.engine}); MobileNet v1 0.25; |X| = ${X.size}, |V| = ${V.size}; budget ${budget} s per run; goal: ${goal * 100}% validation fooling rate`);
  const curves: Curve[] = [];
  for (const [norm, xi] of [['inf', 10], [2, 2000]] as [Norm, number][])
    for (const [name, run] of methods) curves.push(await race(model, X, V, name, run, norm, xi));
  const rows = summarize(curves, budget, goal);
  console.table(rows);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/methods.json', JSON.stringify({ date: new Date().toISOString(), backend, engine: model.engine, images: X.size, valImages: V.size, budget, goal, rows, curves }, null, 2) + '\n');
  console.log('written bench/results/methods.json');
  model.dispose();
}

if (process.argv[1]?.endsWith('methods.js')) await main();
