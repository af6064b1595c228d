/**
 * How the CPU engine cuts gradient calls (`npm run bench:cuts`): one gradient (`vjp`) and ten
 * candidate-class gradients (`candidateGradients`, as DeepFool asks for them) of 8 images, ms per
 * image, with each call cut into runs of 1, 2 or 4 images (10 backward rows per image for the ten
 * gradients; 8 images on two workers make runs of at most 4) on two 1-thread workers, and with the
 * default cut on one 2-thread worker. Every setting's runtime is loaded first and the repeats go round
 * the settings, so that a slow spell of the machine hits them all. MobileNet v1 0.25 and v2 from the
 * assets; zoo models (`--zoo=DIR` or UAP_ZOO, from `scripts/make-onnx-fixtures.py --zoo DIR`) where
 * present. The pixels are a fixed pattern: the graphs' cost does not depend on the values.
 *   node dist/bench/cuts.js [--zoo=DIR] [--zoo-models=resnet18,efficientnet_b0] [--repeats=5]
 * Writes bench/results/cuts.json and .md, and the block of docs/speed.md between `<!-- cuts:begin -->`
 * and `<!-- cuts:end -->`.
 */
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import * as tf from '../src/tf.js';
import { vjp } from '../src/classifier/compute.js';
import { candidateGradients, scratchRows, type GradientScratch } from '../src/classifier/gradients.js';
import type { Differentiable } from '../src/classifier/classifier.js';
import { runPlainGraph, type PlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { onnxRuntime, type OnnxRuntimeOptions } from '../src/engine/onnx/runtime.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';
import { benchNet, zooFiles } from './torchvision.js';
import type { Runtime } from '../src/engine/runtime.js';
import type { Batch } from '../src/math/batch.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const ZOO = args.get('zoo') ?? process.env.UAP_ZOO;
const ZOO_MODELS = (args.get('zoo-models') ?? 'resnet18,efficientnet_b0').split(',');
const REPEATS = Number(args.get('repeats') ?? 5);
const B = 8;
const MANY = 10;

interface Setting {
  label: string;
  options: OnnxRuntimeOptions;
}

const SETTINGS: Setting[] = [
  ...[1, 2, 4].map((images) => ({
    label: `2 workers x 1 thread, runs of ${images} image${images > 1 ? 's' : ''}`,
    options: { layout: { workers: 2, threadsPerWorker: 1 }, cuts: { imagesPerRun: images, rowsPerRun: MANY * images } },
  })),
  { label: '1 worker x 2 threads, default cuts', options: { layout: { workers: 1, threadsPerWorker: 2 } } },
];

interface Row {
  model: string;
  setting: string;
  gradientMs: number;
  tenGradientsMs: number;
}

async function measureModel(name: string, assets: string): Promise<Row[]> {
  const { card, net } = await benchNet(name, assets);
  const shape = card.inputShape;
  // The TF.js graph a Differentiable carries; the gradients below never run it.
  let graph: PlainGraph | undefined;
  const logits = (t: tf.Tensor4D) => runPlainGraph((graph ??= netToTfGraph(net, shape)), t) as tf.Tensor2D;
  const x: Batch = { data: Float32Array.from({ length: B * shape[0] * shape[1] * shape[2] }, (_, i) => (i * 7919) % 256), n: B, shape };
  const model = basename(name).replace(/\.onnx$/, '');
  const runtimes: Runtime[] = [];
  try {
    for (const s of SETTINGS) {
      const rt = await onnxRuntime(net, shape, { ...s.options, only: ['forward', 'vjp'] });
      if (!rt) throw new Error('onnxruntime-node does not load on this platform');
      runtimes.push(rt);
    }
    const classes = (await runtimes[0].forward({ data: x.data.subarray(0, x.data.length / B), n: 1, shape })).length;
    // As the attacks ask for them: one gradient per image in one vjp call, the candidates' through
    // candidateGradients (its chunks of the runtime's maxRows rows, all in flight at once).
    const dy = Float32Array.from({ length: B * classes }, (_, i) => ((i * 31) % 17) / 17 - 0.5);
    const cand = Int32Array.from({ length: B * MANY }, (_, i) => i % MANY);
    const calls = runtimes.map((runtime) => {
      const model: Differentiable = { inputShape: shape, numClasses: classes, logits, runtime };
      // Each in reused memory, as the attacks run them.
      const [one, many]: GradientScratch[] = [{}, {}];
      return [
        () => vjp(model, x, dy, 1, scratchRows(model, x.data.length, one)),
        () => candidateGradients(model, x, cand, MANY, { scratch: many }),
      ];
    });
    const best = calls.map(() => [Infinity, Infinity]);
    for (const pair of calls) for (const call of pair) await call(); // warm-up
    for (let r = 0; r < REPEATS; r++)
      for (const [i, pair] of calls.entries())
        for (const [j, call] of pair.entries()) {
          const start = performance.now();
          await call();
          best[i][j] = Math.min(best[i][j], (performance.now() - start) / B);
        }
    return SETTINGS.map((s, i) => {
      console.log(`${model}, ${s.label}: 1 gradient ${best[i][0].toFixed(2)} ms/img, ${MANY} gradients ${best[i][1].toFixed(2)}`);
      return { model, setting: s.label, gradientMs: best[i][0], tenGradientsMs: best[i][1] };
    });
  } finally {
    await Promise.all(runtimes.map((rt) => rt.dispose()));
  }
}

function markdown(rows: Row[], date: string): string {
  const models = [...new Set(rows.map((r) => r.model))];
  const lines = [
    `Run of ${date.slice(0, 10)}, 2 cores, ${B} images per call, ms per image (\`npm run bench:cuts\`); bold: the fastest cut per model and column. ` +
      `The engine's default: 2 workers x 1 thread, runs of ${4} images for one gradient and of 1 image (${MANY} rows) for ${MANY}.`,
    '',
    `| model | setting | 1 gradient | ${MANY} gradients |`,
    '|---|---|---|---|',
  ];
  for (const m of models) {
    const mine = rows.filter((r) => r.model === m);
    const bestOne = Math.min(...mine.map((r) => r.gradientMs));
    const bestTen = Math.min(...mine.map((r) => r.tenGradientsMs));
    const cell = (v: number, best: number) => (v === best ? `**${v.toFixed(1)}**` : v.toFixed(1));
    for (const r of mine) lines.push(`| ${m} | ${r.setting} | ${cell(r.gradientMs, bestOne)} | ${cell(r.tenGradientsMs, bestTen)} |`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  await initBackend();
  const assets = assetsDir(args.get('assets'));
  const zoo = zooFiles('bench:cuts', ZOO, ZOO_MODELS);
  const rows: Row[] = [];
  for (const name of ['mobilenet_v1_0.25_224', 'mobilenet_v2_1.0_224_quant', ...zoo]) rows.push(...(await measureModel(name, assets)));
  const date = new Date().toISOString();
  const results = join(PROJECT_ROOT, 'bench', 'results');
  mkdirSync(results, { recursive: true });
  writeAtomic(join(results, 'cuts.json'), JSON.stringify({ date, batch: B, rows }, null, 2) + '\n');
  const md = markdown(rows, date);
  writeAtomic(join(results, 'cuts.md'), md);
  if (!replaceDocBlock(join(PROJECT_ROOT, 'docs', 'speed.md'), 'cuts', md)) console.log('docs/speed.md has no cuts block: not updated');
  console.log(md);
}

await main();
