/**
 * Algorithm 1, variant by variant (`npm run bench:algorithm1`): on MobileNet v1 0.25 with the same X
 * and validation images, each variant runs a few passes; after every pass v is scored on X and on the
 * validation images, against random noise of the same norm. The paper's Algorithm 1 (the reference
 * code's settings) and the changes issue 14 asked to try, one at a time, then the two ways of
 * accumulating the steps. Writes bench/results/algorithm1.json and prints the README's table.
 *   node dist/bench/algorithm1.js                                  # the whole plan (about 25 minutes)
 *   node dist/bench/algorithm1.js --images=200 --val=500 --norm=inf --passes=3 --variants=paper,accumulated   # -> algorithm1-inf-200.json
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import {
  ALGORITHM1_VARIANTS,
  computeAlgorithm1,
  ALGORITHM1_DEFAULTS,
  type Algorithm1Options,
  type Algorithm1Knobs,
} from '../src/attacks/universal.js';
import type { PassRecord } from '../src/attacks/passes.js';
import { evaluatePerturbation, predictSet } from '../src/evaluation/scoring.js';
import { loadSet } from '../src/data/sets.js';
import { assetsDir } from '../src/paths.js';
import { lpNorm, parseNorm, defaultXi, type Norm } from '../src/math/lp.js';
import { noiseOfNorm } from '../src/math/noise.js';
import type { Classifier } from '../src/classifier/classifier.js';
import type { ImageSet } from '../src/data/dataset.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const paper = ALGORITHM1_VARIANTS.paper;

/** Each row: what it changes, from the paper's Algorithm 1 (the reference code's settings). */
export const VARIANTS: Record<string, { label: string; options: Partial<Algorithm1Options & Algorithm1Knobs> }> = {
  paper: { label: 'the paper (minimal L2 DeepFool steps, v projected after each)', options: paper },
  'paper-linf': { label: '+ Linf DeepFool (sign steps, `--deepfool-norm match`)', options: { ...paper, deepfoolNorm: 'match' } },
  'paper-overshoot': { label: '+ overshoot 1 (steps twice as long)', options: { ...paper, overshoot: 1 } },
  'paper-accept-all': { label: "+ every step accepted, converged or not (ART's rule)", options: { ...paper, accept: 'all' } },
  'paper-sequential': { label: '+ strictly sequential (batch 1: each step at the current v)', options: { ...paper, batchSize: 1 } },
  'paper-rescale': { label: "+ v rescaled to the ball's boundary after each pass", options: { ...paper, rescale: true } },
  'paper-decay': { label: '+ steps x30, shrinking by 0.7 per pass', options: { ...paper, stepSize: 30, stepDecay: 0.7 } },
  'sum-minimal': { label: 'the SUM of the steps projected (steps x100)', options: { projection: 'sum', steps: 'minimal', stepSize: 100 } },
  accumulated: {
    label: "**accumulated (default): unit steps half the ball's L2 radius long, their sum projected**",
    options: ALGORITHM1_VARIANTS.accumulated,
  },
};

interface Point {
  pass: number;
  seconds: number;
  x: number;
  val: number;
  l2: number;
}

/** Random noise of the run's norm and radius on V: uniform random signs and a Gaussian direction, 3 draws each. */
async function noise(
  model: Classifier,
  V: ImageSet,
  clean: Int32Array,
  norm: Norm,
  xi: number,
): Promise<{ signs: number; gaussian: number }> {
  const rate = async (kind: 'sign' | 'gaussian') => {
    let total = 0;
    for (let seed = 1; seed <= 3; seed++) {
      const r = noiseOfNorm(kind, model.inputShape, norm, xi, seed);
      total += (await evaluatePerturbation(model, V, r, { cleanPred: clean })).foolingRate;
      r.dispose();
    }
    return total / 3;
  };
  return { signs: await rate('sign'), gaussian: await rate('gaussian') };
}

async function run(
  model: Classifier,
  X: ImageSet,
  V: ImageSet,
  clean: Int32Array,
  norm: Norm,
  xi: number,
  passes: number,
  name: string,
): Promise<Point[]> {
  const o: Algorithm1Options & Algorithm1Knobs = {
    ...ALGORITHM1_DEFAULTS,
    norm,
    xi,
    delta: 0,
    maxPasses: passes,
    ...VARIANTS[name].options,
  };
  const curve: Point[] = [];
  let spent = 0;
  const onPass = async (r: PassRecord, v: tf.Tensor3D) => {
    spent += r.seconds;
    const ev = await evaluatePerturbation(model, V, v, { cleanPred: clean });
    curve.push({ pass: r.pass, seconds: +spent.toFixed(1), x: r.foolingRate, val: ev.foolingRate, l2: +lpNorm(v, 2).toFixed(0) });
    console.log(
      `  ${name}: pass ${r.pass}, ${spent.toFixed(0)} s, X ${(r.foolingRate * 100).toFixed(1)}%, val ${(ev.foolingRate * 100).toFixed(1)}%, ||v||_2 ${lpNorm(v, 2).toFixed(0)}`,
    );
  };
  (await computeAlgorithm1(model, X, o, { onPass })).v.dispose();
  return curve;
}

interface Setting {
  images: number;
  val: number;
  norm: Norm;
  passes: number;
  variants: string[];
}

const PLAN: Setting[] = [
  ...(['inf', 2] as Norm[]).map((norm) => ({ images: 200, val: 500, norm, passes: 3, variants: Object.keys(VARIANTS) })),
  ...(['inf', 2] as Norm[]).map((norm) => ({ images: 1000, val: 1300, norm, passes: 2, variants: ['paper', 'accumulated'] })),
];

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

interface SettingResult {
  images: number;
  val: number;
  norm: Norm;
  xi: number;
  passes: number;
  random: { signs: number; gaussian: number };
  rows: { variant: string; curve: Point[] }[];
}
interface Saved {
  results: SettingResult[];
}

/** The README's tables, from results (labels from VARIANTS). `--table` prints them from the saved file. */
function printTables(results: SettingResult[]): void {
  for (const r of results) {
    console.log(
      `${r.norm === 2 ? 'L2' : 'Linf'} ${r.xi}, |X| = ${r.images}, validation ${r.val} images (random noise: signs ${pct(r.random.signs)}, Gaussian ${pct(r.random.gaussian)})\n`,
    );
    console.log('| variant | val. fooling after pass 1 / last | X fooling (last) | L2 norm of v (last) | seconds per pass (mean) |');
    console.log('|---|---|---|---|---|');
    for (const row of r.rows) {
      const [first, last] = [row.curve[0], row.curve[row.curve.length - 1]];
      console.log(
        `| ${VARIANTS[row.variant]?.label ?? row.variant} | ${pct(first.val)} / ${pct(last.val)} | ${pct(last.x)} | ${last.l2} | ${(last.seconds / last.pass).toFixed(0)} |`,
      );
    }
    console.log('');
  }
}

async function main() {
  if (args.has('table')) return printTables((JSON.parse(readFileSync('bench/results/algorithm1.json', 'utf8')) as Saved).results);
  const assets = assetsDir(args.get('assets'));
  if (!existsSync(assets)) {
    console.log(`bench:algorithm1: skipped, assets folder ${assets} not found`);
    return;
  }
  const chosen = await initBackend(args.get('backend'));
  const backend = chosen.name;
  const model = await loadClassifier('mobilenet_v1_0.25_224', { assets, backend: chosen });
  const plan: Setting[] = args.has('images')
    ? [
        {
          images: Number(args.get('images')),
          val: Number(args.get('val') ?? 500),
          norm: parseNorm(args.get('norm') ?? 'inf')!,
          passes: Number(args.get('passes') ?? 3),
          variants: (args.get('variants') ?? Object.keys(VARIANTS).join(',')).split(','),
        },
      ]
    : PLAN;
  // The whole plan is the README's table; a run with flags goes to a file of its own.
  const file = args.has('images') ? `bench/results/algorithm1-${plan[0].norm}-${plan[0].images}.json` : 'bench/results/algorithm1.json';
  const results: SettingResult[] = [];
  for (const s of plan) {
    const X = await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: s.images, assets, what: 'X' });
    const V = await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: s.val, assets, what: 'V' });
    const xi = defaultXi(s.norm, model.inputShape);
    const clean = await predictSet(model, V, null);
    const random = await noise(model, V, clean, s.norm, xi);
    console.log(
      `|X| = ${X.size}, |V| = ${V.size}, ${s.norm === 2 ? 'L2' : 'Linf'} ${xi}: random noise on V: signs ${pct(random.signs)}, Gaussian ${pct(random.gaussian)}`,
    );
    const rows: SettingResult['rows'] = [];
    for (const name of s.variants) rows.push({ variant: name, curve: await run(model, X, V, clean, s.norm, xi, s.passes, name) });
    results.push({ images: X.size, val: V.size, norm: s.norm, xi, passes: s.passes, random, rows });
  }
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), backend, engine: model.runsOn, model: model.name, results }, null, 2) + '\n',
  );
  console.log(`written ${file}\n`);
  printTables(results);
  model.dispose();
}

if (process.argv[1]?.endsWith('algorithm1.js')) await main();
