/**
 * Imported PyTorch models (`npm run bench:onnx`): full-size torchvision architectures with seeded
 * random weights, exported to ONNX by `scripts/make-onnx-fixtures.py --zoo DIR` (PyTorch needed once,
 * not here), loaded by uap's ONNX importer and run on its ONNX Runtime engine. For each: logits and the
 * input gradient against PyTorch on the same weights and 8 real ImageNet images, and ms per image for
 * the forward pass, one input gradient and ten candidate-class gradients beside PyTorch's (2 threads).
 * Each model's load time, resident memory after loading and peak after a gradient, each in a fresh
 * process, beside PyTorch loading the same weights from a state dict (NAME.pt in the zoo).
 * Writes bench/results/onnx-zoo.json, the tables bench/results/onnx-zoo.md and onnx-memory.md, and
 * their generated blocks in docs/models.md.
 *   node dist/bench/onnx.js --zoo=DIR [--models=resnet18,vgg11_bn] [--memory-only] [--quick]
 * --quick: every timing the best of two runs after a warm-up (the first gradient runs of a large model
 * still fault in their activations' memory), PyTorch under its idle-machine setting alone (IDLE_BEST)
 * instead of the best of four: for the transformers, whose full reference takes long on 2 cores.
 * Such rows are marked in the table.
 *   node dist/bench/onnx.js --render   (the tables and docs again from the saved results)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, tfjsBackend, type Backend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { candidateGradients, scratchRows, type GradientScratch } from '../src/classifier/gradients.js';
import type { Batch } from '../src/math/batch.js';
import { loadSet } from '../src/data/sets.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeNpy } from '../src/io/npy.js';
import { IDLE_BEST, isReferenceBlas, runTorchBest, TORCH_PYTHON } from './torch.js';
import { exactness, uapExact, type TorchExact } from './exactness.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';
import { TORCHVISION } from './torchvision.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const B = 8;
const QUICK = args.has('quick');
/** Timed runs after the warm-up: forward, gradients. */
const REPEATS = QUICK ? { forward: 2, gradients: 2 } : { forward: 5, gradients: 3 };

async function best<T>(f: () => Promise<T>, repeats: number): Promise<number> {
  await f();
  let t = Infinity;
  for (let i = 0; i < repeats; i++) {
    const s = performance.now();
    await f();
    t = Math.min(t, performance.now() - s);
  }
  return t / B;
}

type TorchRef = TorchExact & {
  forwardMs: number;
  gradientMs: number;
  tenGradientsMs: number;
  /** The BLAS library PyTorch's matrix products ran on (bench/torch_net.py). */
  blas?: string;
};

function torchReference(name: string, x: Batch): (TorchRef & { torchSettings: string }) | undefined {
  if (!TORCH_PYTHON || spawnSync(TORCH_PYTHON, ['-c', 'import torchvision'], { stdio: 'ignore' }).status !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'uap-zoo-'));
  try {
    writeNpy(join(dir, 'x.npy'), { data: x.data, shape: [x.n, ...x.shape] });
    const out = join(dir, 'out.json');
    const scriptArgs = [name, join(dir, 'x.npy'), out, '2', ...(QUICK ? ['--quick'] : [])];
    return runTorchBest<TorchRef>('bench/torch_zoo.py', scriptArgs, out, QUICK ? [IDLE_BEST] : undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(backend: Backend, file: string, name: string, x: Batch) {
  const t0 = performance.now();
  const model = await loadClassifier(file, { backend, card: { preprocess: TORCHVISION, numClasses: 1000 } });
  const loadSeconds = (performance.now() - t0) / 1000;
  const K = model.numClasses;
  const margin = new Float32Array(B * K);
  for (let i = 0; i < B; i++) [margin[i * K], margin[i * K + 1]] = [-1, 1];
  const forward = await best(() => forwardLogits(model, x), REPEATS.forward);
  // Each in reused memory, as SGD-UAP's steps and DeepFool's iterations run them.
  const one: GradientScratch = {};
  const gradient = await best(() => vjp(model, x, margin, 1, scratchRows(model, x.data.length, one)), REPEATS.gradients);
  const cand = Int32Array.from({ length: B * 10 }, (_, i) => 10 + (i % 10));
  const ten: GradientScratch = {};
  const tenGradients = await best(() => candidateGradients(model, x, cand, 10, { scratch: ten }), REPEATS.gradients);
  const ours = await uapExact(model, x);
  const runsOn = model.runsOn;
  model.dispose();
  const torch = torchReference(name, x);
  return {
    model: name,
    engine: runsOn,
    loadSeconds,
    /** Timed by --quick: best of two runs, PyTorch under one setting. */
    quick: QUICK || undefined,
    forward,
    gradient,
    tenGradients,
    torch: torch && {
      forwardMs: torch.forwardMs,
      gradientMs: torch.gradientMs,
      tenGradientsMs: torch.tenGradientsMs,
      settings: torch.torchSettings,
      blas: torch.blas,
      ...exactness(ours, torch),
    },
  };
}

/** Load time and resident memory of one process that loads the model and runs a forward pass and a gradient. */
interface LoadFigures {
  loadSeconds: number;
  rssAfterLoadMB: number;
  peakMB: number;
  baseMB: number;
  /** PSS (shared pages counted once), sampled: absent in rows measured before it was. */
  basePssMB?: number;
  pssAfterLoadMB?: number;
  peakPssMB?: number;
}

/**
 * uap's figures (bench/onnxLoad.ts) and PyTorch's for the same weights loaded from a state dict
 * (bench/torch_load.py, where the zoo has NAME.pt), each in a fresh process: a high-water mark is per
 * process, and earlier models must not count. With a gradient on B images, and again on one (`one`:
 * the target's case, a model that loads and runs a gradient).
 */
function loadFigures(
  zoo: string,
  name: string,
): { uap?: LoadFigures; torch?: LoadFigures; one?: { uap?: LoadFigures; torch?: LoadFigures }; cached?: LoadFigures; weightsMB: number } {
  const weightsMB = statSync(join(zoo, `${name}.onnx`)).size / 2 ** 20;
  // uap's loads as a user's first (an empty export cache, which the load fills) and, last, a second
  // load of the same file (the export cache as the 1-image run left it).
  const cache = mkdtempSync(join(tmpdir(), 'uap-bench-cache-'));
  const empty = () => (rmSync(cache, { recursive: true, force: true }), cache);
  try {
    const both = (batch: number) => ({ uap: uapLoad(zoo, name, batch, empty()), torch: torchLoad(zoo, name, batch) });
    const [many, one] = [both(B), both(1)];
    return { ...many, one, cached: uapLoad(zoo, name, 1, cache), weightsMB };
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

function uapLoad(zoo: string, name: string, batch: number, cache: string): LoadFigures | undefined {
  const child = spawnSync(process.execPath, [join(import.meta.dirname, 'onnxLoad.js'), join(zoo, `${name}.onnx`), String(batch)], {
    encoding: 'utf8',
    maxBuffer: 2 ** 24,
    env: { ...process.env, UAP_CACHE_DIR: cache },
  });
  const last = child.stdout.trim().split('\n').pop() ?? '';
  const uap = child.status === 0 && last.startsWith('{') ? (JSON.parse(last) as LoadFigures) : undefined;
  if (!uap) console.log(`${name}: load measurement failed (${child.stderr.trim().split('\n').pop() ?? child.status})`);
  return uap;
}

function torchLoad(zoo: string, name: string, batch: number): LoadFigures | undefined {
  if (!TORCH_PYTHON || !existsSync(join(zoo, `${name}.pt`))) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'uap-zoo-'));
  try {
    const out = join(dir, 'load.json');
    const r = spawnSync(TORCH_PYTHON, ['bench/torch_load.py', zoo, name, String(batch), out, '2'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return r.status === 0 ? (JSON.parse(readFileSync(out, 'utf8')) as LoadFigures) : undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const RESULTS = 'bench/results/onnx-zoo.json';

/** The rows of the last runs (bench/results/onnx-zoo.json). */
function previousRows(): Row[] {
  return existsSync(RESULTS) ? ((JSON.parse(readFileSync(RESULTS, 'utf8')) as { rows?: Row[] }).rows ?? []) : [];
}

type Memory = { memory?: ReturnType<typeof loadFigures>; date?: string };
/** A model's figures; `date`: when they were measured (a run of some models keeps the others' rows). */
type Row = (Awaited<ReturnType<typeof measure>> & Memory) | ({ model: string } & Memory) | { model: string; error: string };

/**
 * Load time and memory beside PyTorch's: the targets are a peak within 3x the weights over the base,
 * and load within 2x PyTorch's. Memory as the kernel's high-water mark of resident pages (RSS) and as
 * the sampled peak of PSS, which counts the weights file ONNX Runtime's sessions each map once
 * (RSS counts it once per session).
 */
function memoryTable(rows: Row[]): string {
  const f = (v?: number, d = 0) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(d));
  // Load time does not depend on the batch: the faster of the two runs (the first reads a cold file).
  const load = (a?: LoadFigures, b?: LoadFigures) => {
    const t = [a?.loadSeconds, b?.loadSeconds].filter((v): v is number => v !== undefined);
    return t.length ? Math.min(...t) : undefined;
  };
  const lines = [
    `| model | weights (MB) | load (best of 2), s: uap / PyTorch | second load (export cache), s: uap | peak RSS after a gradient on ${B} images, MB: uap / PyTorch | peak PSS, MB: uap / PyTorch | peak PSS over the base, in weights: uap / PyTorch | the same with a gradient on 1 image | the same after a second load |`,
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    if ('error' in r || !r.memory) continue;
    const { uap, torch, weightsMB } = r.memory;
    const over = (m?: LoadFigures) =>
      m?.peakPssMB !== undefined && m.basePssMB !== undefined ? ((m.peakPssMB - m.basePssMB) / weightsMB).toFixed(1) + 'x' : '-';
    lines.push(
      `| ${r.model} | ${f(weightsMB)} | ${f(load(uap, r.memory.one?.uap), 1)} / ${f(load(torch, r.memory.one?.torch), 1)} | ${f(r.memory.cached?.loadSeconds, 1)} | ` +
        `${f(uap?.peakMB)} / ${f(torch?.peakMB)} | ${f(uap?.peakPssMB)} / ${f(torch?.peakPssMB)} | ${over(uap)} / ${over(torch)} | ` +
        `${over(r.memory.one?.uap)} / ${over(r.memory.one?.torch)} | ${over(r.memory.cached)} |`,
    );
  }
  return lines.join('\n');
}

/** The README's table: ms per image beside PyTorch's (ratio = PyTorch / uap), and the agreement. */
function zooTable(rows: Row[]): string {
  const e = (v?: number) => (v === undefined ? '-' : v.toExponential(1));
  const cell = (ours: number, torch?: number) =>
    `${ours.toFixed(1)} / ${torch?.toFixed(1) ?? '-'} (${torch ? (torch / ours).toFixed(2) + 'x' : '-'})`;
  const lines = [
    '| model | load (s) | forward, ms/image: uap / PyTorch (ratio) | 1 gradient | 10 gradients | logits vs PyTorch | gradient vs float64: uap / PyTorch float32 |',
    '|---|---|---|---|---|---|---|',
  ];
  // Rows from before the bench recorded PyTorch's BLAS ran it on Debian's reference BLAS (this machine had no other).
  const referenceBlas = (t?: { blas?: string }) => t !== undefined && (!t.blas || isReferenceBlas(t.blas));
  for (const r of rows) {
    if ('error' in r) lines.push(`| ${r.model} | refused: ${r.error} ||||||`);
    else if ('forward' in r) {
      const t = r.torch;
      lines.push(
        `| ${r.model}${r.quick ? ' (quick)' : ''}${referenceBlas(t) ? ' *' : ''} | ${r.loadSeconds.toFixed(1)} | ${cell(r.forward, t?.forwardMs)} | ${cell(r.gradient, t?.gradientMs)} | ${cell(r.tenGradients, t?.tenGradientsMs)} | ${e(t?.logitsRelDiff)} | ${e(t?.gradL2VsFloat64)} / ${e(t?.torchL2VsFloat64)} |`,
      );
    }
  }
  if (rows.some((r) => 'forward' in r && referenceBlas(r.torch)))
    lines.push(
      '',
      "\\* PyTorch's matrix products on the reference BLAS (see below): its fully connected layers slower than they could be.",
    );
  return lines.join('\n');
}

async function main() {
  if (args.has('render')) {
    // The tables and the docs' blocks again from bench/results/onnx-zoo.json, measuring nothing.
    const saved = existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, 'utf8')) as { backend?: string }) : {};
    save([], saved.backend ?? 'onnx');
    console.log(`${zooTable(previousRows())}\n\n${memoryTable(previousRows())}`);
    return;
  }
  const zoo = args.get('zoo') ?? process.env.UAP_ZOO;
  const assets = assetsDir(args.get('assets'));
  if (!zoo || !existsSync(zoo)) {
    console.log(
      'bench:onnx: skipped, no zoo folder (make one with: /usr/bin/python3 scripts/make-onnx-fixtures.py --zoo DIR; then --zoo=DIR or UAP_ZOO)',
    );
    return;
  }
  if (!existsSync(assets)) {
    console.log(`bench:onnx: skipped, assets folder ${assets} not found`);
    return;
  }
  // The speed rows' loads (in this process) are first loads; the memory rows measure a second one apart.
  process.env.UAP_CACHE_DIR = 'off';
  const chosen = await initBackend(args.get('backend'));
  const backend = chosen.name;
  const names = (
    args.get('models') ??
    readdirSync(zoo)
      .filter((f) => f.endsWith('.onnx'))
      .map((f) => f.slice(0, -5))
      .sort()
      .join(',')
  ).split(',');
  const probe = await loadClassifier('mobilenet_v1_0.25_224', { assets, backend: tfjsBackend() });
  const X = await loadSet(probe, join(assets, 'data', 'imagenet-sample-images'), { limit: B, assets, what: 'images' });
  probe.dispose();
  const x = X.images(Array.from({ length: B }, (_, i) => i));
  const rows: Row[] = [];
  for (const name of names) {
    try {
      // --memory-only: the load and memory columns alone (PyTorch's speed reference of a VGG-size model is slow on a few cores).
      const speed = args.has('memory-only') ? undefined : await measure(chosen, join(zoo, `${name}.onnx`), name, x);
      const earlierRow = previousRows().find((p) => p.model === name);
      const base = speed ?? (earlierRow && !('error' in earlierRow) ? earlierRow : { model: name });
      const r: Row = { ...base, memory: loadFigures(zoo, name), date: new Date().toISOString() };
      rows.push(r);
      save(rows, backend);
      if (!speed || !('forward' in r)) {
        console.log(`${name}: load and memory measured`);
        continue;
      }
      const t = r.torch;
      const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) + 'x' : '-');
      console.log(
        `${name}: load ${r.loadSeconds.toFixed(1)} s on ${r.engine}; ms/image forward ${r.forward.toFixed(1)} (torch ${t?.forwardMs.toFixed(1) ?? '-'}, ${ratio(t?.forwardMs, r.forward)}), ` +
          `1 grad ${r.gradient.toFixed(1)} (torch ${t?.gradientMs.toFixed(1) ?? '-'}, ${ratio(t?.gradientMs, r.gradient)}), 10 grads ${r.tenGradients.toFixed(1)} (torch ${t?.tenGradientsMs.toFixed(1) ?? '-'}, ${ratio(t?.tenGradientsMs, r.tenGradients)}); ` +
          `logits vs torch ${t?.logitsRelDiff.toExponential(1) ?? '-'}; gradient (L2-relative) vs torch ${t?.gradL2VsTorch.toExponential(1) ?? '-'}, ` +
          `vs float64 ${t?.gradL2VsFloat64.toExponential(1) ?? '-'} (torch float32: ${t?.torchL2VsFloat64.toExponential(1) ?? '-'})`,
      );
    } catch (e) {
      console.log(`${name}: FAILED ${(e as Error).message}`);
      rows.push({ model: name, error: (e as Error).message });
      save(rows, backend);
    }
  }
  console.log(`\n${zooTable(previousRows())}\n\n${memoryTable(previousRows())}\nwritten ${RESULTS}`);
}

/**
 * Merges this run's rows into bench/results/onnx-zoo.json (a run of some models, --models, replaces
 * their rows and keeps the others') and rewrites the tables: after every model, so that a run cut
 * short keeps what it measured.
 */
function save(rows: Row[], backend: string): void {
  const earlier = previousRows();
  const merged = [
    ...earlier.map((r) => rows.find((n) => n.model === r.model) ?? r),
    ...rows.filter((n) => !earlier.some((r) => r.model === n.model)),
  ];
  mkdirSync('bench/results', { recursive: true });
  writeAtomic('bench/results/onnx-zoo.md', zooTable(merged) + '\n');
  writeAtomic('bench/results/onnx-memory.md', memoryTable(merged) + '\n');
  const docs = join(PROJECT_ROOT, 'docs', 'models.md');
  replaceDocBlock(docs, 'onnx-zoo', zooTable(merged));
  replaceDocBlock(docs, 'onnx-memory', memoryTable(merged));
  writeAtomic(
    RESULTS,
    JSON.stringify({ date: new Date().toISOString(), backend, batch: B, torch: TORCH_PYTHON ?? null, rows: merged }, null, 2) + '\n',
  );
}

if (process.argv[1]?.endsWith('onnx.js')) await main();
