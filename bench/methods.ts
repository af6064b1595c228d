/**
 * Head-to-head of the crafting methods (`npm run bench:methods`): per model (default MobileNet v1 0.25
 * and MobileNet v2; `--models=a,b,file.onnx` for others, an imported ONNX classifier included) with the
 * same crafting images X and validation images V, each method runs pass after pass until a time
 * budget; after every pass v is evaluated on V (evaluation time not counted). Reports, per model and
 * norm, the crafting time each method needs to reach 30 / 50 / 70% validation fooling, and the best
 * rate within the budget. Writes bench/results/methods.json and methods.md.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { ALGORITHM1_VARIANTS, computeAlgorithm1, ALGORITHM1_DEFAULTS } from '../src/attacks/universal.js';
import { computeSgdUniversal, SGD_DEFAULTS } from '../src/attacks/sgd.js';
import { computeDataFreeUniversal, DATA_FREE_DEFAULTS } from '../src/attacks/dataFree.js';
import type { PassRecord, RunControl, UniversalResult } from '../src/attacks/passes.js';
import { evaluatePerturbation } from '../src/evaluation/scoring.js';
import { AbortedError } from '../src/errors.js';
import { loadSet } from '../src/data/sets.js';
import { assetsDir } from '../src/paths.js';
import { defaultXi, type Norm } from '../src/math/lp.js';
import type { Classifier } from '../src/classifier/classifier.js';
import type { ImageSet } from '../src/data/dataset.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const images = Number(args.get('images') ?? 500);
const valImages = Number(args.get('val') ?? 500);
const budget = Number(args.get('budget') ?? 60);
const goals = (args.get('goals') ?? '0.3,0.5,0.7').split(',').map(Number);
const models = (args.get('models') ?? 'mobilenet_v1_0.25_224,mobilenet_v2_1.0_224_quant').split(',');
const norms = (args.get('norms') ?? 'inf').split(',').map((n) => (n === '2' ? 2 : 'inf')) as Norm[];

interface Curve {
  model: string;
  method: string;
  norm: string;
  points: { seconds: number; pass: number; valFoolingRate: number }[];
}

type Runner = (model: Classifier, X: ImageSet, norm: Norm, xi: number, ctl: RunControl) => Promise<UniversalResult>;

const methods: [string, Runner][] = [
  [
    'Algorithm 1, accumulated (default)',
    (m, X, norm, xi, ctl) => computeAlgorithm1(m, X, { ...ALGORITHM1_DEFAULTS, norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    "Algorithm 1, the paper's variant",
    (m, X, norm, xi, ctl) =>
      computeAlgorithm1(m, X, { ...ALGORITHM1_DEFAULTS, ...ALGORITHM1_VARIANTS.paper, norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'Algorithm 1, FGSM inside',
    (m, X, norm, xi, ctl) => computeAlgorithm1(m, X, { ...ALGORITHM1_DEFAULTS, inner: 'fgsm', norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'Algorithm 1, PGD inside (10 steps)',
    (m, X, norm, xi, ctl) => computeAlgorithm1(m, X, { ...ALGORITHM1_DEFAULTS, inner: 'pgd', norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'SGD-UAP, sign steps',
    (m, X, norm, xi, ctl) => computeSgdUniversal(m, X, { ...SGD_DEFAULTS, norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'SGD-UAP, Adam',
    (m, X, norm, xi, ctl) => computeSgdUniversal(m, X, { ...SGD_DEFAULTS, optimizer: 'adam', norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'GD-UAP, no data',
    (m, X, norm, xi, ctl) => computeDataFreeUniversal(m, X, { ...DATA_FREE_DEFAULTS, norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
  [
    'GD-UAP, data prior',
    (m, X, norm, xi, ctl) =>
      computeDataFreeUniversal(m, X, { ...DATA_FREE_DEFAULTS, prior: 'data', norm, xi, delta: 0, maxPasses: 1000 }, ctl),
  ],
];

async function race(model: Classifier, X: ImageSet, V: ImageSet, name: string, run: Runner, norm: Norm, xi: number): Promise<Curve> {
  const curve: Curve = { model: model.name, method: name, norm: norm === 2 ? `L2 ${xi}` : `Linf ${xi}`, points: [] };
  const stop = new AbortController();
  let spent = 0;
  const onPass = async (r: PassRecord, v: tf.Tensor3D) => {
    spent += r.seconds;
    const ev = await evaluatePerturbation(model, V, v);
    curve.points.push({ seconds: spent, pass: r.pass, valFoolingRate: ev.foolingRate });
    process.stdout.write(
      `  ${model.name}, ${name}, ${curve.norm}: pass ${r.pass}, ${spent.toFixed(0)} s, val fooling rate ${(ev.foolingRate * 100).toFixed(1)}%\n`,
    );
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

/** Per curve: crafting seconds to each goal rate, and the best rate, counting only passes that ended within the budget. */
export function summarize(curves: Curve[], budget: number, goals: number[]): Record<string, string>[] {
  return curves.map((c) => {
    const inBudget = c.points.filter((p) => p.seconds <= budget);
    const best = inBudget.reduce((b, p) => (p.valFoolingRate > b.valFoolingRate ? p : b), { seconds: 0, pass: 0, valFoolingRate: 0 });
    const row: Record<string, string> = { model: c.model, norm: c.norm, method: c.method };
    for (const goal of goals) {
      const reached = inBudget.find((p) => p.valFoolingRate >= goal);
      row[`s to ${goal * 100}%`] = reached ? reached.seconds.toFixed(0) : '-';
    }
    row[`best in ${budget} s`] = best.pass
      ? `${(best.valFoolingRate * 100).toFixed(1)}% (${best.seconds.toFixed(0)} s)`
      : 'no pass ended in time';
    return row;
  });
}

/** The rows as a Markdown table. */
function markdown(rows: Record<string, string>[]): string {
  const keys = Object.keys(rows[0] ?? {});
  return (
    [
      `| ${keys.join(' | ')} |`,
      `|${keys.map(() => '---').join('|')}|`,
      ...rows.map((r) => `| ${keys.map((k) => r[k]).join(' | ')} |`),
    ].join('\n') + '\n'
  );
}

async function main() {
  const assets = assetsDir(args.get('assets'));
  if (!existsSync(assets)) {
    console.log(`bench:methods: skipped, assets folder ${assets} not found (pass --assets=DIR or set UAP_ASSETS)`);
    return;
  }
  const chosen = await initBackend(args.get('backend'));
  const backend = chosen.name;
  const curves: Curve[] = [];
  const sizes: string[] = [];
  for (const spec of models) {
    const model = await loadClassifier(spec, { assets, backend: chosen });
    try {
      // ImageNet models: the assets' images, Linf 10; Fashion-MNIST models (an ONNX export of a PyTorch
      // ResNet, say): seeded samples of the 60,000 / 10,000 images, Linf 25.5 (0.1 of the range, the
      // budget Fashion-MNIST studies use).
      const imagenet = model.labelSpace === 'imagenet';
      const X = imagenet
        ? await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: images, assets, what: 'X' })
        : await loadSet(model, 'fashion:train', { sample: { count: images, seed: 0 }, what: 'X' });
      const V = imagenet
        ? await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: valImages, assets, what: 'V' })
        : await loadSet(model, 'fashion:test', { sample: { count: valImages, seed: 0 }, what: 'V' });
      const linf = imagenet ? 10 : 25.5;
      sizes.push(
        `${model.name} on ${model.runsOn}${imagenet ? '' : ` (Fashion-MNIST: ${images} of the 60,000 training images as X, ${valImages} test images)`}`,
      );
      console.log(`backend ${backend} (${model.runsOn}); ${model.name}; |X| = ${X.size}, |V| = ${V.size}; budget ${budget} s per run`);
      for (const norm of norms)
        for (const [name, run] of methods)
          curves.push(await race(model, X, V, name, run, norm, norm === 2 ? defaultXi(2, model.inputShape) * (linf / 10) : linf));
    } finally {
      model.dispose();
    }
  }
  const rows = summarize(curves, budget, goals);
  console.table(rows);
  mkdirSync('bench/results', { recursive: true });
  const md = `${sizes.join('; ')}; |X| = ${images}, |V| = ${valImages}; ${budget} s of crafting per run (evaluation not counted); backend ${backend}.\n\n${markdown(rows)}`;
  writeFileSync(
    'bench/results/methods.json',
    JSON.stringify({ date: new Date().toISOString(), backend, images, valImages, budget, goals, rows, curves }, null, 2) + '\n',
  );
  writeFileSync('bench/results/methods.md', md);
  console.log('written bench/results/methods.json, bench/results/methods.md');
}

if (process.argv[1]?.endsWith('methods.js')) await main();
