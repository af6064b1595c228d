/**
 * Core benchmark (`npm run bench`): on the ImageNet MobileNet v1 0.25 from the shared assets,
 * prints DeepFool images/second, seconds per Algorithm 1 pass, the speed-up of the tiled top-k
 * gradient over one backward pass per class (results asserted equal), and tf.memory() across passes.
 * Ratios, not absolute times, are what carry across machines. Writes bench/results/core.json and
 * docs/speed.md's DeepFool sentence (`--render`: the sentence again from core.json, measuring nothing).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { findCard, loadClassifier, loadNet } from '../src/import/load.js';
import { resolveCardPath } from '../src/classifier/card.js';
import { writeNpy } from '../src/io/npy.js';
import { writeNetFiles } from './netFile.js';
import { runTorchBest, TORCH_PYTHON } from './torch.js';
import { candidateGradients, candidateGradientsLoop } from '../src/classifier/gradients.js';
import { forwardLogits } from '../src/classifier/compute.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { imageSize, type Batch } from '../src/math/batch.js';
import { l2 } from '../src/math/lp.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS } from '../src/attacks/universal.js';
import { loadSet } from '../src/data/sets.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';
import { join } from 'node:path';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const images = Number(args.get('images') ?? 64);
const passes = Number(args.get('passes') ?? 2);
const backendFlag = args.get('backend');

/** max_i |a_i - b_i| and max_i |a_i|: their ratio is how far two gradient arrays are apart, relative to their scale. */
const maxAbsDifference = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const maxAbs = (a: Float32Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Best of `repeats` timings (the first run also warms caches); returns the last result. */
async function seconds<T>(f: () => T | Promise<T>, repeats = 3): Promise<[T, number]> {
  let best = Infinity;
  let r!: T;
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    r = await f();
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return [r, best];
}

/**
 * The textbook PyTorch DeepFool (bench/torch_deepfool.py: one image at a time, one backward pass per
 * candidate class) on the same weights and images: ms per image and each image's ||r||_2.
 */
async function torchDeepFool(
  name: string,
  assets: string,
  x: Batch,
  k: number,
): Promise<{ msPerImage: number; l2: number[]; threads: number } | undefined> {
  if (!TORCH_PYTHON) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'uap-df-'));
  const card = findCard(name, {}, assets);
  writeNetFiles(
    await loadNet(card, resolveCardPath(card, card.model, assets), assets),
    card.inputShape,
    join(dir, 'net.json'),
    join(dir, 'net.bin'),
  );
  writeNpy(join(dir, 'x.npy'), { data: x.data, shape: [x.n, ...x.shape] });
  return runTorchBest<{ msPerImage: number; l2: number[]; threads: number }>(
    'bench/torch_deepfool.py',
    [join(dir, 'net.json'), join(dir, 'net.bin'), join(dir, 'x.npy'), join(dir, 'out.json'), '2', String(k)],
    join(dir, 'out.json'),
  );
}

const DOC = join(PROJECT_ROOT, 'docs', 'speed.md');
/** The run docs/speed.md's Algorithm 1 paragraph reports: 1000 images, up to 10 passes. */
const PASSES_RUN = 'bench/results/core-1000x10.json';

async function main() {
  if (args.has('render')) {
    // docs/speed.md's DeepFool sentence again from bench/results/core.json, measuring nothing.
    const saved = JSON.parse(readFileSync('bench/results/core.json', 'utf8')) as { deepfool: Parameters<typeof deepfoolText>[0] };
    replaceDocBlock(DOC, 'deepfool', deepfoolText(saved.deepfool));
    if (existsSync(PASSES_RUN))
      replaceDocBlock(DOC, 'algorithm1-passes', passesText(JSON.parse(readFileSync(PASSES_RUN, 'utf8')), PASSES_RUN));
    return;
  }
  const assets = assetsDir(args.get('assets'));
  if (!existsSync(assets)) {
    console.log(`bench: skipped, assets folder ${assets} not found (pass --assets=DIR or set UAP_ASSETS)`);
    return;
  }
  const chosen = await initBackend(backendFlag);
  const backend = chosen.name;
  const model = await loadClassifier('mobilenet_v1_0.25_224', { assets, backend: chosen });
  const X = await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: images, assets, what: 'X' });
  console.log(`backend ${backend} (model runs on ${model.runsOn}); MobileNet v1 0.25 224; ${X.size} images`);

  // 1. Tiled top-k gradients vs one backward pass per class (same numbers).
  const k = 10;
  const x = X.images([0, 1, 2, 3, 4, 5, 6, 7]);
  const cand = Int32Array.from({ length: 8 * k }, (_, i) => (i * 37) % 1000);
  const [tiled, tTiled] = await seconds(() => candidateGradients(model, x, cand, k), 3);
  const [loop, tLoop] = await seconds(() => candidateGradientsLoop(model, x, cand, k), 3);
  const diff = maxAbsDifference(tiled.rows, loop.rows) / maxAbs(loop.rows);
  if (!(diff < 1e-4)) throw new Error(`tiled and per-class gradients differ: relative ${diff}`);

  // 1b. Forward and one-class input gradient per image (batch 8): the engine's raw speed.
  const [, tFwd] = await seconds(() => forwardLogits(model, x), 3);
  const oneClass = Int32Array.from({ length: 8 }, (_, i) => (i * 37) % 1000);
  const [, tOne] = await seconds(() => candidateGradients(model, x, oneClass, 1), 3);

  // 2. DeepFool throughput (L2, 10 candidates, batch 8).
  const [df, tDf] = await seconds(() => deepfool(model, x, { candidates: k }), 2);
  const meanSteps = df.steps.reduce((a, b) => a + b, 0) / df.steps.length;
  const size = imageSize(x.shape);
  const ourL2 = Array.from({ length: 8 }, (_, i) => l2(df.r.subarray(i * size, (i + 1) * size)));
  const torchDf = await torchDeepFool('mobilenet_v1_0.25_224', assets, x, k);
  // Per image, |ours - PyTorch's| / PyTorch's ||r||_2: the same minimal perturbation, not just the same speed.
  const l2Diff = torchDf ? Math.max(...torchDf.l2.map((t, i) => Math.abs(ourL2[i] - t) / t)) : undefined;

  // 3. Algorithm 1: passes at Linf 10 (all of them: delta 0), memory before/after each pass.
  const mem: { pass: number; numTensors: number; numBytes: number; rssMB: number; peakRssMB: number }[] = [];
  // Peak RSS: sampled during the run (process.resourceUsage().maxRSS is the process-wide high-water mark).
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 200);
  const snap = (pass: number) => {
    peak = Math.max(peak, process.memoryUsage().rss);
    mem.push({
      pass,
      numTensors: tf.memory().numTensors,
      numBytes: tf.memory().numBytes,
      rssMB: Math.round(process.memoryUsage().rss / 1e6),
      peakRssMB: Math.round(peak / 1e6),
    });
  };
  snap(0);
  const res = await computeAlgorithm1(
    model,
    X,
    { ...ALGORITHM1_DEFAULTS, norm: 'inf', xi: 10, maxPasses: passes, delta: 0 },
    { onPass: (r) => snap(r.pass) },
  );
  clearInterval(sampler);
  res.v.dispose();

  const result = {
    date: new Date().toISOString(),
    backend,
    engine: model.runsOn,
    images: X.size,
    maxPasses: passes,
    forwardMsPerImage: (tFwd / 8) * 1000,
    inputGradientMsPerImage: (tOne / 8) * 1000,
    gradients: {
      batch: 8,
      candidates: k,
      tiledSeconds: tTiled,
      perClassLoopSeconds: tLoop,
      speedup: tLoop / tTiled,
      maxRelativeDifference: diff,
    },
    deepfool: {
      imagesPerSecond: 8 / tDf,
      msPerImage: (tDf / 8) * 1000,
      meanSteps,
      torch: torchDf && {
        msPerImage: torchDf.msPerImage,
        threads: torchDf.threads,
        speedup: torchDf.msPerImage / ((tDf / 8) * 1000),
        maxRelativeL2Difference: l2Diff,
      },
    },
    universal: { secondsPerPass: res.history.map((h) => h.seconds), foolingRate: res.history.map((h) => h.foolingRate) },
    memory: mem,
  };
  console.table({
    'forward (ms/image, batch 8)': ((tFwd / 8) * 1000).toFixed(1),
    'input gradient, one class (ms/image, batch 8)': ((tOne / 8) * 1000).toFixed(1),
    'tiled top-10 gradients (s, batch 8, best of 3)': tTiled.toFixed(2),
    'one backward per class (s, best of 3)': tLoop.toFixed(2),
    'speed-up, tiled vs loop': (tLoop / tTiled).toFixed(2) + 'x',
    'DeepFool images/s (L2, k=10)': (8 / tDf).toFixed(2),
    'DeepFool mean steps': meanSteps.toFixed(1),
    'DeepFool ms/image, ours': ((tDf / 8) * 1000).toFixed(0),
    'DeepFool ms/image, textbook PyTorch (one backward per candidate)': torchDf
      ? torchDf.msPerImage.toFixed(0)
      : '- (python3-torch not installed)',
    'DeepFool speed-up vs PyTorch': torchDf ? (torchDf.msPerImage / ((tDf / 8) * 1000)).toFixed(2) + 'x' : '-',
    'DeepFool ||r||_2 vs PyTorch (max relative difference)': l2Diff !== undefined ? l2Diff.toExponential(1) : '-',
    'Algorithm 1 s/pass': res.history.map((h) => h.seconds.toFixed(1)).join(', '),
  });
  console.log('memory across passes (tf.memory and RSS):');
  console.table(mem);
  mkdirSync('bench/results', { recursive: true });
  const out = images === 64 && passes === 2 ? 'bench/results/core.json' : `bench/results/core-${images}x${passes}.json`;
  writeAtomic(out, JSON.stringify({ ...result, maxRssMB: Math.round(process.resourceUsage().maxRSS / 1e3) }, null, 2) + '\n');
  console.log(`written ${out}`);
  if (out.endsWith('core.json') && !replaceDocBlock(DOC, 'deepfool', deepfoolText(result.deepfool)))
    console.log('docs/speed.md has no deepfool block: not updated');
  if (out === PASSES_RUN) replaceDocBlock(DOC, 'algorithm1-passes', passesText(result, out));
  model.dispose();
}

/** docs/speed.md's Algorithm 1 sentence (seconds and fooling rate per pass, memory across passes), from a run's figures. */
function passesText(
  r: {
    date: string;
    images: number;
    /** Not in runs before 2026-12-07: then the file's name gives it (core-IMAGESxPASSES.json). */
    maxPasses?: number;
    universal: { secondsPerPass: number[]; foolingRate: number[] };
    memory: { pass: number; numTensors: number; rssMB: number; peakRssMB: number }[];
  },
  file: string,
): string {
  const { secondsPerPass: s, foolingRate: fr } = r.universal;
  const after = r.memory.filter((m) => m.pass > 0);
  const range = (v: number[]) => (Math.min(...v) === Math.max(...v) ? `${v[0]}` : `${Math.min(...v)}-${Math.max(...v)}`);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return (
    `Run of ${r.date.slice(0, 10)} (\`node dist/bench/core.js --images=${r.images} --passes=${r.maxPasses ?? /x(\d+)\.json$/.exec(file)?.[1]}\`, \`${file}\`): ` +
    `passes of ${s.map((t) => t.toFixed(1)).join(', ')} s, fooling ${pct(fr[0])} of X after the first and ${pct(fr[fr.length - 1])} after the last (pass ${fr.length}); ` +
    `resident memory ${range(after.map((m) => m.rssMB))} MB after the passes, peak ${Math.max(...r.memory.map((m) => m.peakRssMB))} MB; ` +
    `TF.js tensors ${range(after.map((m) => m.numTensors))} after each pass.`
  );
}

/** docs/speed.md's DeepFool sentence, from this run's figures. */
function deepfoolText(d: {
  msPerImage: number;
  torch?: { msPerImage: number; speedup: number; maxRelativeL2Difference?: number };
}): string {
  const ours = `${d.msPerImage.toFixed(0)} ms per image`;
  if (!d.torch) return `${ours} (PyTorch's reference not run: python3-torch not installed).`;
  const l2 = d.torch.maxRelativeL2Difference;
  return (
    `${ours}, against ${d.torch.msPerImage.toFixed(0)} ms for the textbook PyTorch DeepFool on the same weights and images: ` +
    `**${d.torch.speedup.toFixed(2)}x**` +
    (l2 === undefined ? '.' : `, and the same minimal perturbations (per image, ||r||_2 within ${l2.toExponential(1)} of PyTorch's).`)
  );
}

await main();
