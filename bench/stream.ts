/**
 * Streaming data at the paper's scale (`npm run bench:stream`): a perturbation scored over 50,000
 * images read from tar shards, against the same model's speed on pre-decoded batches, with peak memory
 * and the time to the first batch; and crafting on |X| = 10,000 with memory read after every pass.
 *
 * Images: Fashion-MNIST's 70,000 real images (Debian's dataset-fashion-mnist), the first 50,000 packed as
 * webdataset shards (key.png + key.cls, 5,000 per shard, written once with GNU tar), scored by the
 * embedded model; and with --imagenet=N, N images re-encoded from the ImageNet validation images with
 * seeded crops and flips (JPEG, 224 px for MobileNet v1 0.25), which makes decoding the heavy part.
 * Each measurement runs in a fresh process so that its peak RSS is its own. Every image is scored clean
 * and under v (the strictest ratio: decoding weighs most beside two forward passes) and, for the small
 * models, also as `uap evaluate` scores it (v beside 6 noise draws); reading and decoding alone are
 * timed too, which bounds what streaming can reach on the same cores.
 *   node dist/bench/stream.js [--images=50000] [--imagenet=5000 [--onnx=resnet18.onnx]] [--torch] [--work=DIR]
 * --onnx adds a torchvision export (scripts/make-onnx-fixtures.py --zoo) on the same JPEG shards;
 * --torch adds the anchor a user would otherwise pick, PyTorch streaming the same shards with the same
 * weights (bench/torch_stream.py: tarfile IterableDataset, PIL, DataLoader with 2 workers, our batch
 * size for the model, 2 threads, OMP_WAIT_POLICY=PASSIVE) for the Fashion and --onnx rows, as a ratio to ours (Debian's
 * python3-torch and python3-torchvision; skipped without), run twice: with glibc's default allocator and
 * with one told to keep freed memory (TUNED_MALLOC), the ratio taken to the faster;
 * --results=NAME writes bench/results/NAME.{json,md} instead of stream.{json,md}; --render (with
 * --results) only writes NAME.md again from NAME.json.
 * Writes bench/results/stream.{json,md}.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import * as tf from '../src/tf.js';
import { initBackend, type Backend } from '../src/engine/backend.js';
import { FASHION_MNIST_DIR, fashionPng, readFashionSplit } from '../src/data/fashion.js';
import { listDataset } from '../src/data/dataset.js';
import { openSet, loadSet } from '../src/data/sets.js';
import { loadModel } from '../src/import/load.js';
import { methodOptions } from '../src/attacks/methods.js';
import { predictMany, scoringBatch } from '../src/evaluation/scoring.js';
import { ImageSet } from '../src/data/imageSet.js';
import { computeAlgorithm1, type Algorithm1Options } from '../src/attacks/universal.js';
import { randomPerturbation } from '../src/math/noise.js';
import { assetsDir } from '../src/paths.js';
import { Rng } from '../src/math/random.js';
import { findCard, loadNet } from '../src/import/load.js';
import { resolveCardPath } from '../src/classifier/card.js';
import { writeNetFiles } from './netFile.js';
import { TORCH_PYTHON, TUNED_MALLOC } from './torch.js';
import { TORCHVISION } from './torchvision.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const WORK = args.get('work') ?? join(tmpdir(), 'uap-bench-stream');
const IMAGES = Number(args.get('images') ?? 50000);
const PER_SHARD = 5000;
/** Results go to bench/results/OUT.{json,md}. */
const OUT = args.get('results') ?? 'stream';
const rssMb = () => process.resourceUsage().maxRSS / 1024;

/** Packs the samples (lists of name -> bytes) into `dir` as shards of PER_SHARD samples, with GNU tar. */
async function writeShards(dir: string, samples: AsyncGenerator<[string, Buffer][]>): Promise<void> {
  const tmp = `${dir}.partial`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  let shard = 0;
  let names: string[] = [];
  const stage = join(tmp, 'stage');
  const flush = () => {
    if (!names.length) return;
    execFileSync('tar', ['cf', join(tmp, `shard-${String(shard++).padStart(4, '0')}.tar`), '-C', stage, ...names]);
    rmSync(stage, { recursive: true });
    names = [];
  };
  for await (const sample of samples) {
    mkdirSync(stage, { recursive: true });
    for (const [name, bytes] of sample) {
      await writeFile(join(stage, name), bytes);
      names.push(name);
    }
    if (names.length >= PER_SHARD * sample.length) flush();
  }
  flush();
  renameSync(tmp, dir);
}

/** The first IMAGES Fashion-MNIST images (train, then test) as shards, made once. */
async function fashionShards(): Promise<string> {
  const dir = join(WORK, `fashion-${IMAGES}`);
  if (existsSync(dir)) return dir;
  const train = readFashionSplit(FASHION_MNIST_DIR, 'train');
  const test = readFashionSplit(FASHION_MNIST_DIR, 't10k');
  async function* samples(): AsyncGenerator<[string, Buffer][]> {
    for (let k = 0; k < IMAGES; k++) {
      const [split, i] = k < train.n ? [train, k] : [test, k - train.n];
      const key = `f${String(k).padStart(6, '0')}`;
      yield [
        [`${key}.png`, await fashionPng(split, i)],
        [`${key}.cls`, Buffer.from(`${split.labels[i]}\n`)],
      ];
    }
  }
  await writeShards(dir, samples());
  return dir;
}

/** N JPEGs from the ImageNet validation images: seeded crop (60-100% of each side) and flip, as shards. */
async function imagenetShards(n: number): Promise<string> {
  const dir = join(WORK, `imagenet-${n}`);
  if (existsSync(dir)) return dir;
  const src = join(assetsDir(), 'data', 'ilsvrc2012_val_1300');
  const items = listDataset(src, { wnids: undefined });
  const rng = new Rng(7);
  async function* samples(): AsyncGenerator<[string, Buffer][]> {
    for (let k = 0; k < n; k++) {
      const item = items[k % items.length];
      const meta = await sharp(item.path).metadata();
      const [w, h] = [meta.width!, meta.height!];
      const cw = Math.max(32, Math.floor(w * (0.6 + 0.4 * rng.next())));
      const ch = Math.max(32, Math.floor(h * (0.6 + 0.4 * rng.next())));
      let img = sharp(item.path).extract({
        left: Math.floor(rng.next() * (w - cw)),
        top: Math.floor(rng.next() * (h - ch)),
        width: cw,
        height: ch,
      });
      if (rng.next() < 0.5) img = img.flop();
      yield [[`i${String(k).padStart(6, '0')}.jpg`, await img.jpeg({ quality: 90 }).toBuffer()]];
    }
  }
  await writeShards(dir, samples());
  return dir;
}

/** torchvision's normalisation in pixel units: the card of an imported PyTorch model (--onnx). */

/** A bundled model by name, or an ONNX file exported from torchvision (1000 classes, its normalisation). */
function benchModel(backend: Backend, spec: string) {
  const card = spec.endsWith('.onnx') ? { preprocess: TORCHVISION, numClasses: 1000 } : undefined;
  return loadModel(spec, { assets: assetsDir(), card, backend }, { info: () => {}, warn: () => {} });
}

type Measure = {
  images: number;
  seconds: number;
  imagesPerSecond: number;
  firstBatchSeconds?: number;
  peakRssMb: number;
  skipped?: number;
  batch?: number;
};

/**
 * The perturbations every image is scored under: clean and v (seeded random, Linf 10), and with
 * `draws` > 0 that many noise draws more, as `uap evaluate` scores v beside random noise (6: three
 * draws at each of two norms).
 */
function scoredUnder(shape: [number, number, number], draws: number): (Float32Array | null)[] {
  return [null, ...Array.from({ length: 1 + draws }, (_, k) => randomPerturbation(shape, 'inf', 10, 1 + k).dataSync() as Float32Array)];
}

/** Child: the labels of every image under scoredUnder's perturbations, streamed from `data`, in the batches `uap evaluate` uses. */
async function scoreStreamed(backend: Backend, modelName: string, data: string, draws: number): Promise<Measure> {
  const model = await benchModel(backend, modelName);
  const set = openSet(model, data, { assets: assetsDir() });
  const vs = scoredUnder(model.inputShape, draws);
  const t0 = performance.now();
  let first: number | undefined;
  const [clean] = await predictMany(model, set, vs, undefined, () => (first ??= (performance.now() - t0) / 1000));
  const seconds = (performance.now() - t0) / 1000;
  return {
    images: clean.length,
    seconds,
    imagesPerSecond: clean.length / seconds,
    firstBatchSeconds: first,
    peakRssMb: rssMb(),
    skipped: set.skipped.length,
    batch: scoringBatch(model),
  };
}

/** Seconds the pre-decoded measurement runs at least (whole rounds of its 8,192 images). */
const MIN_SECONDS = 3;

/** Child: the same work on batches decoded beforehand (the model's own speed): 2,048 images scored 4 times over, repeated for at least MIN_SECONDS. */
async function scorePredecoded(backend: Backend, modelName: string, data: string, draws: number): Promise<Measure> {
  const model = await benchModel(backend, modelName);
  const some = await loadSet(model, data, { limit: 2048, assets: assetsDir() });
  const big = new ImageSet(some.shape, new Uint8Array(some.pixels.length * 4), Array.from({ length: 4 }, () => some.items).flat());
  for (let r = 0; r < 4; r++) big.pixels.set(some.pixels, r * some.pixels.length);
  const vs = scoredUnder(model.inputShape, draws);
  await predictMany(model, some, vs); // warm-up
  // At least MIN_SECONDS of work, as the streamed measurement has: a fast model's 8,192 images take
  // 0.4 s, where one scheduling hiccup on a shared machine moves the figure by 10%.
  const t0 = performance.now();
  let images = 0;
  do images += (await predictMany(model, big, vs))[0].length;
  while (performance.now() - t0 < MIN_SECONDS * 1000);
  const seconds = (performance.now() - t0) / 1000;
  return { images, seconds, imagesPerSecond: images / seconds, peakRssMb: rssMb() };
}

/** Child: reading and decoding alone, the streamed set's batches taken and dropped (no model runs). */
async function decodeOnly(backend: Backend, modelName: string, data: string): Promise<Measure> {
  const model = await benchModel(backend, modelName);
  const set = openSet(model, data, { assets: assetsDir() });
  const t0 = performance.now();
  let images = 0;
  for await (const b of set.batches(scoringBatch(model))) images += b.items.length;
  const seconds = (performance.now() - t0) / 1000;
  return { images, seconds, imagesPerSecond: images / seconds, peakRssMb: rssMb() };
}

/** Child: Algorithm 1 on |X| = 10,000 Fashion-MNIST images, peak RSS after every pass. */
async function craftLarge(
  backend: Backend,
  data: string,
): Promise<{ passes: { pass: number; foolingRate: number; seconds: number; peakRssMb: number }[]; images: number }> {
  const model = await benchModel(backend, 'fashion');
  const X = await loadSet(model, data, { limit: 10000, assets: assetsDir() });
  const passes: { pass: number; foolingRate: number; seconds: number; peakRssMb: number }[] = [];
  const res = await computeAlgorithm1(
    model,
    X,
    methodOptions('algorithm1', model, { norm: 'inf', xi: 40, maxPasses: 4, delta: 0, seed: 0 }) as Algorithm1Options,
    {
      onPass: (r) => {
        passes.push({ pass: r.pass, foolingRate: r.foolingRate, seconds: r.seconds, peakRssMb: rssMb() });
      },
    },
  );
  res.v.dispose();
  return { passes, images: X.size };
}

type TorchMeasure = Measure & { decodeImagesPerSecond: number; workers: number; split: string };

/**
 * PyTorch's DataLoader on the same shards (bench/torch_stream.py): `model` is a bundled name (its Net
 * written for torch_net.py) or an ONNX file of the torchvision zoo. OpenMP threads that sleep (PASSIVE),
 * not runTorchBest's best of two: threads that spin take the cores the DataLoader's workers decode on
 * (ResNet-18 on 640 JPEGs, 2 cores: 8.5 images/s PASSIVE, 4.3 unset, 3.6 ACTIVE). `tunedMalloc`: glibc's
 * allocator told to keep freed memory (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_), which a PyTorch
 * user may set: large activations then stop costing fresh pages (page faults) on every batch.
 */
async function torchStreamed(model: string, data: string, batch: number, tunedMalloc = false): Promise<TorchMeasure> {
  let which: string[];
  if (model.endsWith('.onnx')) which = ['--zoo', basename(model, '.onnx')];
  else {
    const assets = assetsDir();
    const card = findCard(model, {}, assets);
    const [json, bin] = [join(WORK, `${model}.net.json`), join(WORK, `${model}.net.bin`)];
    writeNetFiles(await loadNet(card, resolveCardPath(card, card.model, assets), assets), card.inputShape, json, bin);
    which = ['--net', json, '--bin', bin];
  }
  const out = join(WORK, 'torch.json');
  execFileSync(TORCH_PYTHON!, ['bench/torch_stream.py', data, out, ...which, '--batch', String(batch)], {
    env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', ...(tunedMalloc ? TUNED_MALLOC : {}) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const t = JSON.parse(readFileSync(out, 'utf8')) as Omit<TorchMeasure, 'firstBatchSeconds'> & { firstBatchMs: number };
  return {
    images: t.images,
    seconds: t.seconds,
    imagesPerSecond: t.imagesPerSecond,
    firstBatchSeconds: t.firstBatchMs / 1000,
    peakRssMb: t.peakRssMb,
    decodeImagesPerSecond: t.decodeImagesPerSecond,
    workers: t.workers,
    split: t.split,
  };
}

const torchvisionAtHand = () =>
  TORCH_PYTHON !== undefined && spawnSync(TORCH_PYTHON, ['-c', 'import torchvision'], { stdio: 'ignore' }).status === 0;

function child<T>(mode: string, ...rest: string[]): T {
  const out = join(WORK, `${mode}.json`);
  const r = spawnSync(
    process.execPath,
    [fileURLToPath(import.meta.url), `--child=${mode}`, `--out=${out}`, ...rest.map((a, i) => `--a${i}=${a}`), `--work=${WORK}`],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) throw new Error(`bench child ${mode} failed (${r.status})`);
  return JSON.parse(readFileSync(out, 'utf8')) as T;
}

async function main(): Promise<void> {
  const backend = await initBackend(undefined);
  const mode = args.get('child');
  if (mode) {
    const a = (i: number) => args.get(`a${i}`)!;
    const draws = Number(args.get('a2') ?? 0);
    const result =
      mode === 'streamed'
        ? await scoreStreamed(backend, a(0), a(1), draws)
        : mode === 'predecoded'
          ? await scorePredecoded(backend, a(0), a(1), draws)
          : mode === 'decode'
            ? await decodeOnly(backend, a(0), a(1))
            : await craftLarge(backend, a(0));
    writeFileSync(args.get('out')!, JSON.stringify(result));
    tf.disposeVariables();
    return;
  }
  if (args.has('render')) return renderResults();
  mkdirSync(WORK, { recursive: true });
  const results: Record<string, unknown> = {
    machine: `${process.platform} ${process.arch}, node ${process.version}`,
    date: new Date().toISOString(),
  };
  const fashion = await fashionShards();
  console.log(`fashion shards: ${readdirSync(fashion).length} in ${fashion}`);
  const torch =
    args.has('torch') &&
    (torchvisionAtHand() ||
      (console.log('--torch: skipped, no python3 with torch and torchvision (apt-get install python3-torchvision)'), false));
  /**
   * One model on one set: reading and decoding alone, then streamed vs pre-decoded scoring under clean +
   * v (and, with `asEvaluate`, under the 8 perturbations `uap evaluate` scores: decoding then weighs 4x
   * less per forward pass), and PyTorch on the first workload.
   */
  const pair = async (name: string, modelName: string, data: string, o: { torch?: boolean; asEvaluate?: boolean } = {}) => {
    const entry: Entry = { decodeOnly: child<Measure>('decode', modelName, data) };
    const skip = (e: Error) => void console.log(`--torch: ${name} skipped (${e.message})`);
    for (const draws of o.asEvaluate ? [0, 6] : [0]) {
      const streamed = child<Measure>('streamed', modelName, data, String(draws));
      const pre = child<Measure>('predecoded', modelName, data, String(draws));
      const py = o.torch && draws === 0 ? await torchStreamed(modelName, data, streamed.batch ?? 32).catch(skip) : undefined;
      const tuned = py ? await torchStreamed(modelName, data, streamed.batch ?? 32, true).catch(skip) : undefined;
      const best = tuned && py && tuned.imagesPerSecond > py.imagesPerSecond ? tuned : py;
      entry[draws ? 'asEvaluate' : 'cleanAndV'] = {
        streamed,
        predecoded: pre,
        ratio: streamed.imagesPerSecond / pre.imagesPerSecond,
        ...(py && { torch: py, torchTunedMalloc: tuned, oursOverTorch: streamed.imagesPerSecond / best!.imagesPerSecond }),
      };
      console.log(
        `${name}, ${draws} draws: streamed ${streamed.imagesPerSecond.toFixed(0)}, pre-decoded ${pre.imagesPerSecond.toFixed(0)} images/s`,
      );
    }
    results[name] = entry;
  };
  await pair('Fashion-MNIST CNN, PNG shards', 'fashion', fashion, { torch, asEvaluate: true });
  const imagenet = Number(args.get('imagenet') ?? 0);
  if (imagenet > 0) {
    const shards = await imagenetShards(imagenet);
    await pair('MobileNet v1 0.25, JPEG shards', 'mobilenet_v1_0.25_224', shards, { asEvaluate: true });
    // A model of a usual cost beside the tiny one: decoding weighs in proportion to the model's speed.
    const onnx = args.get('onnx');
    if (onnx) await pair(`${basename(onnx, '.onnx')} (ONNX), JPEG shards`, onnx, shards, { torch });
  }
  const craft = child<Craft>('craft', fashion);
  results.craft10000 = craft;
  console.log(`crafting on |X| = 10,000: peak RSS after each pass ${craft.passes.map((p) => `${p.peakRssMb.toFixed(0)} MB`).join(', ')}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${OUT}.json`, JSON.stringify(results, null, 2) + '\n');
  renderResults();
}

type Scored = {
  streamed: Measure;
  predecoded: Measure;
  ratio: number;
  torch?: TorchMeasure;
  torchTunedMalloc?: TorchMeasure;
  oursOverTorch?: number;
};
type Entry = { decodeOnly: Measure; cleanAndV?: Scored; asEvaluate?: Scored };
type Craft = { passes: { pass: number; peakRssMb: number }[] };

/**
 * bench/results/OUT.md from OUT.json (`--render` alone re-renders a run's table). "In turn": the rate
 * if reading + decoding and the model took turns on the machine, 1 / (1/decoding alone + 1/pre-decoded);
 * where each alone keeps both cores busy, overlapping them cannot do better, so a streamed rate near it
 * says streaming costs nothing beyond decoding's own work.
 */
function renderResults(): void {
  const results = JSON.parse(readFileSync(`bench/results/${OUT}.json`, 'utf8')) as Record<string, unknown>;
  const entries = Object.entries(results).filter(
    (e): e is [string, Entry] => typeof e[1] === 'object' && e[1] !== null && 'decodeOnly' in e[1],
  );
  const torch = entries.some(([, e]) => e.cleanAndV?.torch);
  const rows: string[] = [];
  const notes: string[] = [];
  for (const [name, e] of entries)
    for (const [under, sc] of [
      ['clean, v', e.cleanAndV],
      ['clean, v, 6 noise draws (as uap evaluate)', e.asEvaluate],
    ] as const) {
      if (!sc) continue;
      const { streamed, predecoded: pre, torch: py, torchTunedMalloc: tuned } = sc;
      const inTurn = 1 / (1 / e.decodeOnly.imagesPerSecond + 1 / pre.imagesPerSecond);
      const pyCells = !torch
        ? ''
        : py
          ? ` ${py.imagesPerSecond.toFixed(0)} | ${tuned ? tuned.imagesPerSecond.toFixed(0) : '-'} | ${sc.oursOverTorch!.toFixed(2)}x |`
          : ' - | - | - |';
      const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
      rows.push(
        `| ${name} | ${under} | ${streamed.images} | ${streamed.imagesPerSecond.toFixed(0)} | ${pre.imagesPerSecond.toFixed(0)} | ${pct(sc.ratio)} | ${e.decodeOnly.imagesPerSecond.toFixed(0)} | ${inTurn.toFixed(0)} | ${pct(streamed.imagesPerSecond / inTurn)} | ${streamed.peakRssMb.toFixed(0)} MB | ${streamed.firstBatchSeconds?.toFixed(2)} s |${pyCells}`,
      );
      if (py)
        notes.push(
          `${name}: PyTorch ${py.workers} workers (split by ${py.split}), batch ${streamed.batch ?? 32}, decode only ${py.decodeImagesPerSecond.toFixed(0)} images/s, first batch ${py.firstBatchSeconds?.toFixed(2)} s, peak RSS ${py.peakRssMb.toFixed(0)} MB (main + largest worker).`,
        );
    }
  const table = [
    `| model, data | scored under | images | streamed: images/s | pre-decoded: images/s | ratio | reading + decoding alone: images/s | both in turn: images/s | streamed / in turn | peak RSS | first batch |${torch ? ' PyTorch DataLoader img/s | PyTorch, malloc tuned | ours / best PyTorch |' : ''}`,
    `|---|---|---|---|---|---|---|---|---|---|---|${torch ? '---|---|---|' : ''}`,
    ...rows,
  ].join('\n');
  const craft = results.craft10000 as Craft | undefined;
  const craftLine = craft
    ? `Crafting on |X| = 10,000 (Algorithm 1, Linf 40, ${craft.passes.length} passes): peak RSS after each pass ${craft.passes.map((p) => `${p.peakRssMb.toFixed(0)} MB`).join(', ')}.\n`
    : '';
  writeFileSync(`bench/results/${OUT}.md`, `${table}\n\n${notes.map((n) => `${n}\n`).join('')}${notes.length ? '\n' : ''}${craftLine}`);
  console.log(table);
}

await main();
