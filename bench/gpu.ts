/**
 * The GPU engine (`npm run bench:gpu`): images per second of a forward pass, one input gradient, ten
 * candidate gradients, a DeepFool step and an SGD-UAP epoch on full-size torchvision architectures
 * (the zoo of `scripts/make-onnx-fixtures.py --zoo DIR --models resnet18,resnet50,mobilenet_v2`), on
 * uap's WebGPU engine, beside PyTorch on the same GPU (bench/torch_gpu.py, CUDA) and uap's CPU engine
 * on `--cpu-cores` cores (2 by default: the machine most users have; pinned with taskset). Each engine
 * runs in a child process of its own. Images are seeded smooth random pictures (no data set needed:
 * the timings do not depend on what the images show). Writes bench/results/gpu.json and gpu.md.
 *   node dist/bench/gpu.js --zoo=DIR [--models=resnet18,resnet50,mobilenet_v2] [--batch=32]
 *     [--images=256] [--cpu-cores=2] [--cpu-batch=B] [--cpu-images=N] [--engines=webgpu,onnx,torch]
 *     [--torch-device=cuda] [--results=gpu]
 * Images per second hardly depend on the batch on the CPU engine (it cuts calls into runs of a few
 * images), so --cpu-batch / --cpu-images may be smaller to keep its minutes short on large models.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { candidateGradients } from '../src/classifier/gradients.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { computeSgdUniversal, SGD_DEFAULTS } from '../src/attacks/sgd.js';
import { ImageSet } from '../src/data/imageSet.js';
import { writeNpy } from '../src/io/npy.js';
import { Rng } from '../src/math/random.js';
import { TORCH_PYTHON } from './torch.js';
import { TORCHVISION } from './torchvision.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const num = (k: string, d: number) => (args.has(k) ? Number(args.get(k)) : d);
const SHAPE: [number, number, number] = [224, 224, 3];
const MEASURES = ['forward', 'gradient', 'tenGradients', 'deepfoolStep', 'sgdEpoch'] as const;
type Measure = (typeof MEASURES)[number];
type Timings = Record<Measure, number> & { device: string; batch: number; error?: string; torch?: string; tf32Convolutions?: boolean };

/** Seeded smooth pictures: 14x14 random colours upsampled (nearest) to 224x224. */
function pictures(n: number, seed = 7): Uint8Array {
  const rng = new Rng(seed);
  const [H, W, C] = SHAPE;
  const px = new Uint8Array(n * H * W * C);
  for (let i = 0; i < n; i++) {
    const coarse = Array.from({ length: 14 * 14 * C }, () => rng.int(256));
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < C; c++) px[((i * H + y) * W + x) * C + c] = coarse[((y >> 4) * 14 + (x >> 4)) * C + c];
  }
  return px;
}

/** Images per second of `f` over `images` images: best of `repeats` after one warm-up run. */
async function perSecond(f: () => Promise<unknown>, images: number, repeats = 3): Promise<number> {
  await f();
  let best = Infinity;
  for (let i = 0; i < repeats; i++) {
    const s = performance.now();
    await f();
    best = Math.min(best, performance.now() - s);
  }
  return (images * 1000) / best;
}

/** One engine on one model, in this process (a child of main). */
async function child(): Promise<void> {
  const backend = await initBackend(args.get('child'));
  const B = num('batch', 32);
  const N = num('images', 256);
  const model = await loadClassifier(args.get('file')!, { backend, card: { preprocess: TORCHVISION, numClasses: 1000 } });
  const px = pictures(N);
  const X = new ImageSet(
    SHAPE,
    px,
    Array.from({ length: N }, (_, i) => ({ path: `picture${i}` })),
  );
  const x = X.images(Array.from({ length: B }, (_, i) => i));
  const K = model.numClasses;
  const margin = new Float32Array(B * K);
  for (let i = 0; i < B; i++) [margin[i * K], margin[i * K + 1]] = [-1, 1];
  const cand = Int32Array.from({ length: B * 10 }, (_, i) => 10 + (i % 10));
  const t: Timings = {
    device: `${model.runsOn}${model.runtime.layout ? `, ${model.runtime.layout}` : ''}`,
    batch: B,
    forward: await perSecond(() => forwardLogits(model, x), B),
    gradient: await perSecond(() => vjp(model, x, margin, 1), B),
    tenGradients: await perSecond(() => candidateGradients(model, x, cand, 10), B),
    deepfoolStep: await perSecond(() => deepfool(model, x, { maxSteps: 1, candidates: 10 }), B),
    sgdEpoch: await perSecond(
      async () =>
        (await computeSgdUniversal(model, X, { ...SGD_DEFAULTS, norm: 'inf', xi: 10, delta: 0, maxPasses: 1, batchSize: 32 })).v.dispose(),
      N,
      1,
    ),
  };
  model.dispose();
  writeFileSync(args.get('out')!, JSON.stringify(t));
}

/** One engine on one model in a child process; the CPU engine pinned to `cores` cores, with its own (smaller) batch and image count. */
function runChild(engineName: string, file: string, cores?: number): Timings {
  const out = join(mkdtempSync(join(tmpdir(), 'uap-gpu-')), 'out.json');
  const [batch, images] = cores
    ? [num('cpu-batch', num('batch', 32)), num('cpu-images', num('images', 256))]
    : [num('batch', 32), num('images', 256)];
  const node = [process.argv[1], `--child=${engineName}`, `--file=${file}`, `--out=${out}`, `--batch=${batch}`, `--images=${images}`];
  const cpus = cores ? ['taskset', '-c', `0-${cores - 1}`, process.execPath, ...node] : [process.execPath, ...node];
  const r = spawnSync(cpus[0], cpus.slice(1), { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-1)[0] } as Timings;
  return JSON.parse(readFileSync(out, 'utf8'));
}

function runTorch(name: string, pixelsNpy: string): Timings {
  if (!TORCH_PYTHON) return { error: 'no PyTorch' } as Timings;
  const out = join(mkdtempSync(join(tmpdir(), 'uap-gpu-torch-')), 'out.json');
  try {
    execFileSync(TORCH_PYTHON, ['bench/torch_gpu.py', name, pixelsNpy, out, args.get('torch-device') ?? 'cuda', String(num('batch', 32))], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0] } as Timings;
  }
  return JSON.parse(readFileSync(out, 'utf8'));
}

const LABELS: Record<Measure, string> = {
  forward: 'forward',
  gradient: '1 input gradient',
  tenGradients: '10 gradients (one forward)',
  deepfoolStep: 'DeepFool step (10 candidates)',
  sgdEpoch: 'SGD-UAP epoch (with scoring)',
};

type Row = { model: string; gpu?: Timings; cpu?: Timings; torch?: Timings };

/** Images per second per engine, and the two ratios the targets are about. */
function table(rows: Row[], cores: number): string {
  const f = (v?: number) => (v === undefined || !Number.isFinite(v) ? '-' : v >= 100 ? v.toFixed(0) : v.toPrecision(3));
  const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
  const lines = [
    `| model | step | uap WebGPU (img/s) | PyTorch (img/s) | uap CPU, ${cores} cores (img/s) | WebGPU / CPU (target >= 20x) | PyTorch time / uap time |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows)
    for (const m of MEASURES) {
      const [g, t, c] = [r.gpu?.[m], r.torch?.[m], r.cpu?.[m]];
      lines.push(`| ${r.model} | ${LABELS[m]} | ${f(g)} | ${f(t)} | ${f(c)} | ${ratio(g, c)} | ${ratio(g, t)} |`);
    }
  const errors = rows.flatMap((r) =>
    (['gpu', 'torch', 'cpu'] as const).filter((k) => r[k]?.error).map((k) => `- ${r.model}, ${k}: ${r[k]!.error}`),
  );
  return [...lines, ...(errors.length ? ['', ...errors] : [])].join('\n');
}

async function main(): Promise<void> {
  const zoo = args.get('zoo') ?? process.env.UAP_ZOO;
  if (!zoo || !existsSync(zoo)) {
    console.log(
      'bench:gpu: skipped, no zoo folder (make one with: python3 scripts/make-onnx-fixtures.py --zoo DIR --models resnet18,resnet50,mobilenet_v2; then --zoo=DIR or UAP_ZOO)',
    );
    return;
  }
  const engines = (args.get('engines') ?? 'webgpu,onnx,torch').split(',');
  const cores = num('cpu-cores', 2);
  const names = (args.get('models') ?? 'resnet18,resnet50,mobilenet_v2').split(',');
  const dir = mkdtempSync(join(tmpdir(), 'uap-gpu-px-'));
  const npy = join(dir, 'pixels.npy');
  writeNpy(npy, { data: Float32Array.from(pictures(num('images', 256))), shape: [num('images', 256), ...SHAPE] });
  const rows: Row[] = [];
  for (const name of names) {
    const file = join(zoo, `${name}.onnx`);
    const row: Row = { model: name };
    if (engines.includes('webgpu')) row.gpu = runChild('webgpu', file);
    if (engines.includes('torch')) row.torch = runTorch(name, npy);
    if (engines.includes('onnx')) row.cpu = runChild('onnx', file, cores);
    rows.push(row);
    console.log(`${name}: ${JSON.stringify(row)}`);
  }
  const device = rows.find((r) => r.torch?.device)?.torch?.device ?? 'unknown GPU';
  const results = args.get('results') ?? 'gpu';
  const md = [
    `Device: ${device}; uap WebGPU: ${rows.find((r) => r.gpu?.device)?.gpu?.device ?? '-'}; PyTorch ${rows.find((r) => r.torch?.torch)?.torch?.torch ?? '-'} on ${args.get('torch-device') ?? 'cuda'} (cudnn.benchmark on, TF32 convolutions: ${rows.find((r) => r.torch)?.torch?.tf32Convolutions ? 'on, as PyTorch defaults' : 'off'})`,
    `Batch ${num('batch', 32)} for forward and gradient steps, ${num('images', 256)} images per SGD-UAP epoch (minibatches of 32; CPU engine: batch ${num('cpu-batch', num('batch', 32))}, ${num('cpu-images', num('images', 256))} images); ${new Date().toISOString().slice(0, 10)}; \`node dist/bench/gpu.js ${process.argv.slice(2).join(' ')}\``,
    '',
    table(rows, cores),
  ].join('\n');
  console.log(`\n${md}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${results}.md`, md + '\n');
  writeFileSync(
    `bench/results/${results}.json`,
    JSON.stringify({ date: new Date().toISOString(), device, cores, batch: num('batch', 32), images: num('images', 256), rows }, null, 2) +
      '\n',
  );
  console.log(`written bench/results/${results}.md and .json`);
}

if (process.argv[1]?.endsWith('gpu.js')) {
  if (args.has('child')) await child();
  else await main();
  tf.disposeVariables();
}
