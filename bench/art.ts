/**
 * Side-by-side reference (`npm run bench:art`): the Adversarial Robustness Toolbox's
 * UniversalPerturbation (attacker DeepFool) on the same network, weights and images as uap, then the
 * perturbation it returns scored twice: in PyTorch (bench/art_ref.py) and by uap's own evaluation.
 *
 *   node dist/bench/art.js --images=200 --val=500 --norm=inf --xi=10 --passes=1 --art=/tmp/art-src
 *
 * ART is not a dependency: --art names a folder holding its `art/` package (a source checkout), run by
 * Debian's /usr/bin/python3 with python3-torch. Writes runs/art/art-<norm>-<images>.npy (the noise,
 * float32 [H, W, C] pixels) and bench/results/art-<norm>-<images>.json. The machine is shared, so the
 * load average before and after is recorded with the wall time: read ratios, not times.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { findCard, loadClassifier, loadNet } from '../src/import/load.js';
import { resolveCardPath } from '../src/classifier/card.js';
import type { Classifier } from '../src/classifier/classifier.js';
import type { ImageSet } from '../src/data/dataset.js';
import { evaluatePerturbation, foolingRate, predictSet } from '../src/evaluation/scoring.js';
import { loadSet } from '../src/data/sets.js';
import { loadPerturbation } from '../src/perturbation/file.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeNetFiles } from './netFile.js';

const MODEL = 'mobilenet_v1_0.25_224';
// Debian's interpreter: python3-torch and the apt-installed scipy/sklearn/tqdm ART needs live there,
// not in the pyenv python3 that may come first on PATH.
const PYTHON = '/usr/bin/python3';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const norm = args.get('norm') ?? 'inf';
const images = Number(args.get('images') ?? 200);
const val = Number(args.get('val') ?? 500);
const passes = Number(args.get('passes') ?? 1);
const xi = Number(args.get('xi') ?? (norm === '2' ? 2000 : 10));
const artDir = resolve(args.get('art') ?? '/tmp/art-src');
const threads = Number(args.get('threads') ?? 2);
// PyTorch's OpenMP threads spin while they wait for each other. Next to another busy process on this
// 2-core machine that made ART 8.4x slower (40 images: 130.5 s, against 15.6 s with PASSIVE and 14.4 s
// on one thread), so the spinning, not ART, would be measured. Set OMP_WAIT_POLICY=ACTIVE to override.
const ompWait = process.env.OMP_WAIT_POLICY ?? 'PASSIVE';

/** What art_ref.py writes (labels per image stay in the temp folder; only counts reach the results file). */
interface ArtOut {
  art: string;
  torch: string;
  threads: number;
  seed: number;
  deepfool: Record<string, number>;
  delta: number;
  artBatch: number;
  wallSeconds: number;
  passes: { seconds: number; foolingRateX: number }[];
  converged: boolean;
  artFoolingRateX: number;
  calls: Record<string, number>;
  foolingX: number;
  foolingV: number;
  normL2: number;
  normLinf: number;
  cleanX: number[];
  advX: number[];
  cleanV: number[];
  advV: number[];
}

/** Why this bench cannot run here, or null: ART and torch must import under Debian's python. */
function missing(assets: string): string | null {
  if (!existsSync(assets)) return `assets folder ${assets} not found (pass --assets=DIR or set UAP_ASSETS)`;
  if (!existsSync(join(artDir, 'art', '__init__.py'))) return `no ART package at ${artDir}/art (pass --art=DIR, a folder holding art/)`;
  const probe = spawnSync(PYTHON, ['-c', 'import torch, art'], { env: { ...process.env, PYTHONPATH: artDir }, encoding: 'utf8' });
  if (probe.status !== 0)
    return `${PYTHON} cannot import torch and art (${(probe.stderr ?? probe.error?.message ?? '').trim().split('\n').pop()})`;
  return null;
}

/** A uint8 .npy (src/io/npy.ts writes float32 only): the sets stay 4x smaller than as float32 pixels. */
function writeUint8Npy(file: string, data: Uint8Array, shape: number[]): void {
  let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${shape.join(', ')}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n'; // whole header a multiple of 64 bytes
  const head = Buffer.alloc(10 + header.length);
  head.write('\x93NUMPY', 0, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt16LE(header.length, 8);
  head.write(header, 10, 'latin1');
  writeFileSync(file, Buffer.concat([head, data]));
}

function writeSet(file: string, set: ImageSet): void {
  writeUint8Npy(file, set.pixels, [set.size, ...set.shape]);
}

/** The 1, 5 and 15-minute load averages: other jobs on this 2-core machine stretch wall times. */
function loadavg(): number[] {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/** Images whose labels differ between two runs of the same model (PyTorch vs ONNX Runtime). */
function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

async function writeInputs(dir: string, model: Classifier, X: ImageSet, V: ImageSet, assets: string): Promise<void> {
  const card = findCard(MODEL);
  // loadNet includes the card's preprocessing, so PyTorch takes the same [0, 255] pixels as uap.
  const net = await loadNet(card, resolveCardPath(card, card.model, assets), assets);
  writeNetFiles(net, model.inputShape, join(dir, 'net.json'), join(dir, 'net.bin'));
  writeSet(join(dir, 'x.npy'), X);
  writeSet(join(dir, 'v.npy'), V);
}

function runArt(dir: string, noise: string): ArtOut {
  const out = join(dir, 'out.json');
  const r = spawnSync(
    PYTHON,
    [
      join(PROJECT_ROOT, 'bench', 'art_ref.py'),
      '--net',
      join(dir, 'net.json'),
      '--bin',
      join(dir, 'net.bin'),
      '--x',
      join(dir, 'x.npy'),
      '--v',
      join(dir, 'v.npy'),
      '--norm',
      norm,
      '--xi',
      String(xi),
      '--passes',
      String(passes),
      '--threads',
      String(threads),
      '--noise',
      noise,
      '--out',
      out,
    ],
    {
      env: { ...process.env, PYTHONPATH: artDir, OMP_WAIT_POLICY: ompWait },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (r.status !== 0) throw new Error(`bench/art_ref.py failed (exit ${r.status ?? r.signal})`);
  return JSON.parse(readFileSync(out, 'utf8')) as ArtOut;
}

/** The ART commit, when the checkout step left one (`git rev-parse` output in <art>/COMMIT). */
function artCommit(): string | null {
  const f = join(artDir, 'COMMIT');
  return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
}

async function main(): Promise<void> {
  const assets = assetsDir(args.get('assets'));
  const why = missing(assets);
  if (why) {
    console.log(`skipped: ${why}`);
    return;
  }
  if (norm !== 'inf' && norm !== '2') throw new Error(`--norm=${norm}: expected inf or 2`);
  const chosen = await initBackend();
  const backend = chosen.name;
  const model = await loadClassifier(MODEL, { assets, backend: chosen });
  const X = await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: images, assets, what: 'X' });
  const V = await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: val, assets, what: 'validation' });
  const dir = mkdtempSync(join(tmpdir(), 'uap-art-'));
  const name = `art-${norm}-${X.size}${passes === 1 ? '' : `x${passes}`}`;
  mkdirSync('runs/art', { recursive: true });
  const noise = resolve('runs/art', `${name}.npy`);
  try {
    await writeInputs(dir, model, X, V, assets);
    console.log(
      `ART ${artDir} on ${MODEL}: X ${X.size}, validation ${V.size}, L${norm} xi ${xi}, ${passes} pass(es), ${threads} torch threads (OMP_WAIT_POLICY ${ompWait})`,
    );
    const loadBefore = loadavg();
    const a = runArt(dir, noise);
    const loadAfter = loadavg();

    // uap's own evaluation of the same noise: clean labels from ONNX Runtime, clip(x + v, 0, 255).
    const v = loadPerturbation(noise, model);
    const cleanX = await predictSet(model, X, null);
    const advX = await predictSet(model, X, v);
    const onV = await evaluatePerturbation(model, V, v);
    v.dispose();
    const result = {
      date: new Date().toISOString(),
      model: MODEL,
      backend,
      engine: model.runsOn,
      art: { version: a.art, commit: artCommit(), path: artDir },
      torch: a.torch,
      threads: a.threads,
      ompWaitPolicy: ompWait,
      images: X.size,
      val: V.size,
      norm,
      xi,
      maxPasses: passes,
      delta: a.delta,
      deepfool: a.deepfool,
      artBatch: a.artBatch,
      seed: a.seed,
      loadavgBefore: loadBefore,
      loadavgAfter: loadAfter,
      wallSeconds: a.wallSeconds,
      passes: a.passes,
      converged: a.converged,
      calls: a.calls,
      artFoolingRateX: a.artFoolingRateX,
      pytorch: { foolingX: a.foolingX, foolingV: a.foolingV },
      uap: {
        foolingX: foolingRate(cleanX, advX),
        foolingV: onV.foolingRate,
        cleanAccuracyV: onV.cleanAccuracy,
        perturbedAccuracyV: onV.perturbedAccuracy,
      },
      // Boundary images: PyTorch and ONNX Runtime round differently, so a few labels may flip.
      labelsDiffering: {
        cleanX: differing(a.cleanX, cleanX),
        advX: differing(a.advX, advX),
        cleanV: differing(a.cleanV, onV.cleanPred),
        advV: differing(a.advV, onV.advPred),
      },
      normL2: a.normL2,
      normLinf: a.normLinf,
      noise: `runs/art/${name}.npy`,
    };
    const pct = (f: number) => `${(100 * f).toFixed(1)}%`;
    console.log(`load average before ${loadBefore.join(' ')}, after ${loadAfter.join(' ')}`);
    console.log(`wall time (ART generate): ${a.wallSeconds.toFixed(1)} s`);
    console.log(
      `passes: ${a.passes.map((p) => `${p.seconds.toFixed(1)} s ${pct(p.foolingRateX)}`).join(', ')}${a.converged ? ' (converged)' : ''}`,
    );
    console.log(
      `calls: ${Object.entries(a.calls)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
    console.log(`fooling rate on X: ART ${pct(a.artFoolingRateX)}, PyTorch ${pct(a.foolingX)}, uap ${pct(result.uap.foolingX)}`);
    console.log(`fooling rate on validation: PyTorch ${pct(a.foolingV)}, uap ${pct(onV.foolingRate)}`);
    console.log(
      `labels differing PyTorch vs uap: ${Object.entries(result.labelsDiffering)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
    console.log(`||v||_2 ${a.normL2.toFixed(1)}, ||v||_inf ${a.normLinf.toFixed(2)} (pixels)`);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(`bench/results/${name}.json`, JSON.stringify(result, null, 2) + '\n');
    console.log(`written bench/results/${name}.json, noise ${result.noise}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    model.dispose();
  }
}

await main();
