import { existsSync, readdirSync, statSync, type Stats } from 'node:fs';
import { readBoundedText } from '../io/bounded.js';
import { dirname, join, resolve, basename } from 'node:path';
import * as tf from '../tf.js';
import { UsageError } from '../errors.js';
import type { Log } from '../log.js';
import { CARDS_DIR, EMBEDDED_DIR, assetsDir, assetsHint } from '../paths.js';
import { type ModelCard, readCard, resolveCardPath, cardLabels, validateCard } from '../classifier/card.js';
import type { Classifier } from '../classifier/classifier.js';
import { fileHandler } from './fileHandler.js';
import type { Net } from '../engine/net.js';
import { cardAdapters, checkedLogits, tfjsClassifier, type OutputWnids } from './adapters.js';
import type { ImageShape } from '../math/imageShape.js';
export { cardAdapters, cardWnids };
import { runPlainGraph, type PlainGraph } from '../engine/tfjs/plainGraph.js';
import { netToPassingTfGraph, netToTfGraph } from '../engine/tfjs/tfjsNet.js';
import { exportRuntime, loadOrt, onnxRuntime, startRuntime, type Device, type ExportedRuntime } from '../engine/onnx/runtime.js';
import { featureModel } from '../classifier/features.js';
import type { Runtime } from '../engine/runtime.js';
import { maxRelativeDifference } from '../engine/selfcheck.js';
import type { Backend } from '../engine/backend.js';
import { cardFromTflite, readTflite } from './tflite/index.js';
import { forgetParsedOnnx, readOnnx } from './onnx/index.js';
import { FileRunner, fileLogits, fileReference, referenceDifference, type FileReference } from './onnx/reference.js';
import { checkInputShape, classifierNet } from './importNet.js';
import { batchOfTensor } from '../engine/tfjs/batchTensor.js';
import { collectGarbage } from './collectGarbage.js';
import { addingOptimised, cachedRuntime, keepExport, loadCacheFor, onnxCardFields, type LoadCache } from './exportCacheLoad.js';
export { checkInputShape };

/** Short names for the cards shipped in cards/ and the embedded default. */
export function bundledModels(): Record<string, string> {
  const out: Record<string, string> = { fashion: join(EMBEDDED_DIR, 'model', 'card.json') };
  if (existsSync(CARDS_DIR)) for (const f of readdirJson(CARDS_DIR)) out[basename(f, '.json')] = join(CARDS_DIR, f);
  return out;
}

function readdirJson(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort();
}

/** Card fields given on the command line: they complete or override the card file. */
export type CardOverrides = Partial<Omit<ModelCard, 'preprocess'>> & { preprocess?: ModelCard['preprocess'] };

function merge(card: Partial<ModelCard>, o: CardOverrides, source: string): ModelCard {
  const merged = { ...card, ...o, preprocess: { ...card.preprocess, ...o.preprocess } };
  const valid = validateCard(merged, source);
  valid.baseDir = card.baseDir;
  return valid;
}

/** A card built from flags alone, for a model.json that has none beside it. */
function cardFromFlags(modelJson: string, spec: string, o: CardOverrides): ModelCard {
  if (!o.inputShape || !o.numClasses)
    throw new UsageError(
      `{model} ${spec}: no card.json beside the model; write one (see README: model cards) or pass {inputShape} and {numClasses} (with {scale}/{offset} or {mean}/{std})`,
    );
  let json: { format?: string };
  try {
    json = JSON.parse(readBoundedText(modelJson, { what: '{model}' })) as { format?: string };
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`{model} ${spec}: ${modelJson} is not valid JSON`);
  }
  const base: Partial<ModelCard> = {
    name: basename(dirname(modelJson)),
    format: json.format === 'graph-model' ? 'graph' : 'layers',
    model: modelJson,
    baseDir: dirname(modelJson),
  };
  return merge(base, o, `for ${spec} (from flags)`);
}

/**
 * Finds the card for `spec`: a bundled name (`fashion`, `mobilenet_v1_0.25_224`, ...), a card file,
 * a model folder holding `card.json`, or a model.json with `card.json` beside it. `overrides` (from
 * flags) complete or replace its fields, or make the whole card when the model has none.
 */
export function findCard(spec: string, overrides: CardOverrides = {}, assets?: string): ModelCard {
  const withFlags = (file: string) => (Object.keys(overrides).length ? merge(readCard(file), overrides, file) : readCard(file));
  const bundled = bundledModels();
  if (bundled[spec]) return withFlags(bundled[spec]);
  const p = resolve(spec);
  if (!existsSync(p)) {
    throw new UsageError(
      `{model} ${spec}: not found (expected a bundled name: ${Object.keys(bundled).join(', ')}; or a card / model.json / model folder)`,
    );
  }
  for (const ext of ['.tflite', '.onnx'] as const)
    if (p.endsWith(ext) && statSync(p).isFile()) return modelFileCard(p, ext, spec, overrides, assets);
  const dir = statSync(p).isDirectory() ? p : dirname(p);
  const modelJson = statSync(p).isDirectory() ? join(p, 'model.json') : p;
  if (!statSync(p).isDirectory()) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readBoundedText(p, { what: '{model}' })) as Record<string, unknown>;
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`{model} ${spec}: not a JSON model card or model.json`);
    }
    if (!json.modelTopology) return withFlags(p);
  }
  for (const c of ['card.json', 'model.card.json']) if (existsSync(join(dir, c))) return withFlags(join(dir, c));
  if (!existsSync(modelJson)) throw new UsageError(`{model} ${spec}: folder has no card.json and no model.json`);
  return cardFromFlags(modelJson, spec, overrides);
}

/**
 * The card of a .tflite or .onnx file: a bundled card that points at this very file (so the coral
 * models keep their background offset and labels), else `NAME.card.json` beside it, else the file's
 * own facts (input size, class count; TFLite: preprocessing from the input quantisation) completed by flags.
 */
function modelFileCard(file: string, ext: '.tflite' | '.onnx', spec: string, o: CardOverrides, assets?: string): ModelCard {
  const withFlags = (f: string) => (Object.keys(o).length ? merge(readCard(f), o, f) : readCard(f));
  const format = ext === '.tflite' ? 'tflite' : 'onnx';
  const dir = assetsDir(assets);
  for (const cardFile of Object.values(bundledModels())) {
    const c = readCard(cardFile);
    if (c.format === format && resolveCardPath(c, c.model, dir) === file) return withFlags(cardFile);
  }
  const beside = join(dirname(file), `${basename(file, ext)}.card.json`);
  if (existsSync(beside)) return withFlags(beside);
  const own = format === 'tflite' ? cardFromTflite(file, undefined, o.logitsLayer) : onnxCardFields(file, o.inputShape, o.logitsLayer);
  if (!own.preprocess && !o.preprocess) {
    const hint =
      format === 'onnx'
        ? 'torchvision / timm ImageNet models: {mean} 123.675,116.28,103.53 {std} 58.395,57.12,57.375'
        : 'MobileNets: {scale} 0.0078431 {offset} -1';
    throw new UsageError(
      `{model} ${spec}: the model takes float input, so the file does not say how pixels map to it; pass {scale}/{offset} or {mean}/{std} in pixel units (${hint}), or write ${beside}`,
    );
  }
  if (!own.numClasses && !o.numClasses)
    throw new UsageError(`{model} ${spec}: the file does not state the number of classes; pass {numClasses}`);
  if (o.outputMap?.dropFirst && own.numClasses) own.numClasses -= o.outputMap.dropFirst;
  return merge({ ...own, baseDir: dirname(file) }, o, `for ${spec} (from the file and flags)`);
}

/** The wnid lists an outputMap reorders by, read from the card's files. */
function cardWnids(card: ModelCard, assets: string): OutputWnids | undefined {
  const m = card.outputMap;
  if (!m?.wnids) return undefined;
  const read = (f: string) => {
    const file = resolveCardPath(card, f, assets);
    if (!existsSync(file)) throw new UsageError(`model card ${card.name}: outputMap file ${file} not found`);
    return readBoundedText(file, { what: `model card ${card.name}: outputMap file` })
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean);
  };
  return { from: read(m.wnids), reference: read(m.referenceWnids ?? '${assets}/data/labels/imagenet1k_wnids_sorted.txt') };
}

/** The whole classifier (preprocessing, model, output mapping) as one Net, for formats the engine imports: the files read here, the import shared (classifierNet). */
export async function loadNet(card: ModelCard, modelPath: string, assets: string): Promise<Net> {
  if (card.format === 'tflite' || card.format === 'onnx') return readNet(card, modelPath, assets);
  const wnids = cardWnids(card, assets);
  const model = await tf.loadLayersModel(fileHandler(modelPath));
  try {
    return classifierNet(card, { format: 'layers', model, file: modelPath }, wnids);
  } finally {
    model.dispose();
  }
}

/** The Net of a model file the engine reads without TF.js (ONNX, TFLite). */
function readNet(card: ModelCard, modelPath: string, assets: string): Net {
  return readNetAndReference(card, modelPath, assets).net;
}

/** readNet's Net, and for an ONNX file how ONNX Runtime runs the file itself (the load's probe reference) where it can. */
function readNetAndReference(
  card: ModelCard,
  modelPath: string,
  assets: string,
): { net: Net; reference?: FileReference; externalData?: boolean } {
  const wnids = cardWnids(card, assets);
  if (card.format === 'tflite')
    return { net: classifierNet(card, { format: 'tflite', model: readTflite(modelPath), file: modelPath }, wnids) };
  const model = readOnnx(modelPath, false);
  const reference = fileReference(model, modelPath, card);
  // The file's bytes, parsed: not kept while the Net is built from them (a large model's peak).
  collectGarbage();
  return { net: classifierNet(card, { format: 'onnx', model, file: modelPath }, wnids), reference, externalData: model.externalData };
}

/**
 * How to read a model's Net again later (ONNX, TFLite), refusing a file whose size or time changed
 * since now: on ONNX Runtime the main thread lets the weights go once the sessions hold them, and
 * reads them again only for the rare TF.js use (a feature model, TF.js logits).
 */
function netRereader(card: ModelCard, modelPath: string, assets: string): (() => Net) | undefined {
  if (card.format !== 'onnx' && card.format !== 'tflite') return undefined;
  const stamp = (s?: Stats) => (s ? `${s.size}|${s.mtimeMs}` : 'gone');
  const loaded = stamp(statSync(modelPath));
  return () => {
    if (stamp(statSync(modelPath, { throwIfNoEntry: false })) !== loaded)
      throw new UsageError(
        `model ${card.name}: ${modelPath} changed or went away since it was loaded (its weights are read again here); load the model again`,
      );
    return readNet(card, modelPath, assets);
  };
}

/**
 * The check of an export on the probe image against the model file itself, run as it is by ONNX
 * Runtime (onnx/reference.ts): `run` gives the file's logits for the probe (undefined where ONNX
 * Runtime cannot run it: the check falls back to TF.js), `difference` compares logits with them.
 */
export interface FileCheck {
  file: string;
  run: (probe: tf.Tensor4D) => Promise<Float32Array | undefined>;
  difference: (logits: Float32Array, file: Float32Array) => number;
}

/** The image every load checks a model's export on: whole pixel values (the evaluation model takes uint8 bytes), all different. */
export function probeImage(shape: ImageShape): tf.Tensor4D {
  return tf.tidy(() => tf.round(tf.linspace(0, 255, shape[0] * shape[1] * shape[2])).reshape([1, ...shape]) as tf.Tensor4D);
}

/** How far the export's logits may be from the reference's on the probe (max relative difference). */
const PROBE_TOLERANCE = 1e-3;

/**
 * ONNX Runtime for `net` on `device` if it exports and gives the reference logits on a probe image
 * (the file's own, else TF.js's); on a GPU that cannot run it, ONNX Runtime on the CPU; else TF.js.
 * The reason is in `engine`.
 */
async function withOnnx(
  net: () => Net,
  shape: ImageShape,
  logits: (x: tf.Tensor4D) => tf.Tensor2D,
  device: Device,
  release: () => void,
  fileCheck?: FileCheck,
  cache?: LoadCache,
): Promise<{ runtime?: Runtime; runsOn: string }> {
  const tfjs = `TF.js ${tf.getBackend()}`;
  const tried = await onnxOn(net, shape, logits, device, release, fileCheck, cache);
  if ('runtime' in tried) return { runtime: tried.runtime, runsOn: runsOnOnnx(device) };
  if (device === 'webgpu') {
    const cpu = await onnxOn(net, shape, logits, 'cpu', release, fileCheck, cache);
    if ('runtime' in cpu) return { runtime: cpu.runtime, runsOn: `onnxruntime on the CPU (not on WebGPU: ${tried.why})` };
  }
  return { runsOn: `${tfjs} (${tried.why})` };
}

/** What a load on ONNX Runtime reports as where the model runs. */
const runsOnOnnx = (device: Device) => (device === 'webgpu' ? 'onnxruntime (WebGPU)' : 'onnxruntime');

/**
 * ONNX Runtime for `net` on `device`, checked on a probe image, or why not. The reference is the
 * model file run by ONNX Runtime where `fileCheck` can (it checks the import as well as the export),
 * else TF.js running the imported Net. `release` lets the main thread's Net go: at once where the file
 * is the reference (the workers then build their sessions without a second copy of the weights in
 * memory), else once TF.js has its logits and the sessions are built. A probe the file and TF.js both
 * disagree with is an import that computes another function than the file's: refused. An export
 * that passes is kept in `cache` for later loads. Exported for the tests.
 */
export async function onnxOn(
  net: () => Net,
  shape: ImageShape,
  logits: (x: tf.Tensor4D) => tf.Tensor2D,
  device: Device,
  release: () => void,
  fileCheck?: FileCheck,
  cache?: LoadCache,
): Promise<{ runtime: Runtime } | { why: string }> {
  if (!(await loadOrt())) return { why: 'onnxruntime-node unavailable' };
  const notOnnx = (e: unknown) => ({ why: `not ONNX: ${(e as Error).message.split('\n')[0]}` });
  let exported: ExportedRuntime;
  try {
    exported = exportRuntime(net(), shape, { device, filesIn: cache?.cache.workDir });
  } catch (e) {
    return notOnnx(e);
  }
  const pending = startRuntime(exported, cache && addingOptimised(cache, device, exported.files));
  // Handled below; marked now, as it may fail while the reference works.
  pending.catch(() => undefined);
  const probe = probeImage(shape);
  /** TF.js's logits for the probe, or why it could not compute them. */
  const tfjsLogits = (): Float32Array | Error => {
    try {
      return tf.tidy(() => logits(probe).dataSync() as Float32Array);
    } catch (e) {
      return e as Error;
    }
  };
  let fromFile: Float32Array | undefined;
  if (fileCheck) {
    // The import's parse and the Net are gone by now: ONNX Runtime's copy of the file's weights, held
    // while it runs the file, is not added to them.
    release();
    fromFile = await fileCheck.run(probe);
  }
  // TF.js runs while the workers build their sessions (setImmediate: after the messages that start them).
  const want = fromFile ?? (await new Promise<Float32Array | Error>((resolve) => setImmediate(() => resolve(tfjsLogits()))));
  let runtime: Runtime;
  try {
    runtime = await pending;
  } catch (e) {
    probe.dispose();
    return notOnnx(e);
  }
  // What the probe says: the runtime, why not, or an import that computes another function (refused).
  let verdict: { runtime: Runtime } | { why: string } | UsageError;
  try {
    if (want instanceof Error) throw want;
    release();
    const bytes = Uint8Array.from(probe.dataSync());
    // Both at once: each worker takes one.
    const got = await Promise.all([runtime.forward(batchOfTensor(probe)), runtime.forwardImages(bytes, 1, null)]);
    const difference = fromFile ? fileCheck!.difference : maxRelativeDifference;
    const off = Math.max(...got.map((g) => difference(g, want)));
    if (off <= PROBE_TOLERANCE) {
      verdict = { runtime };
      if (cache) keepExport(cache, device, exported, [got[0], got[1]]);
    } else if (!fromFile) verdict = { why: 'the ONNX export disagreed with TF.js on a probe image' };
    else {
      // TF.js runs the imported Net too: where it agrees with the export, the import is what differs.
      const tfjs = tfjsLogits();
      verdict =
        !(tfjs instanceof Error) && fileCheck!.difference(tfjs, want) <= PROBE_TOLERANCE
          ? { why: 'the ONNX export disagreed with the model file on a probe image' }
          : new UsageError(
              `${fileCheck!.file}: uap's import computes other logits than ONNX Runtime running the file (max relative difference ${off.toExponential(1)} on a probe image): an operator read wrongly; please report it with the model`,
            );
    }
  } catch (e) {
    verdict = notOnnx(e);
  } finally {
    probe.dispose();
  }
  if ('runtime' in verdict) return verdict;
  await runtime.dispose();
  if (verdict instanceof UsageError) throw verdict;
  return verdict;
}

/** The check of an export against the model file: ONNX Runtime runs the file on the probe image, after the card's preprocessing and through its output mapping. */
function checkOf(card: ModelCard, file: string, assets: string, ref: FileReference, runner: FileRunner): FileCheck {
  // Once per load (the runner's process runs the file once): a second try on another device reuses it.
  let fileLogitsOnce: Promise<Float32Array | undefined> | undefined;
  return {
    file,
    run: (probe) =>
      (fileLogitsOnce ??= (async () => {
        const adapters = cardAdapters(card, cardWnids(card, assets));
        try {
          const out = await runner.run(file, ref.output, probe, adapters.pre);
          return out && fileLogits(out, adapters.post);
        } finally {
          adapters.dispose();
        }
      })()),
    difference: (logits, out) => referenceDifference(ref, logits, out),
  };
}

/** A model as a job names it: a bundled name, a card or a model file, the card fields that complete or override its card, and where it runs. */
export interface ModelSpec {
  /** A bundled model's name, a card (.json) or a model file (.onnx, .tflite, model.json). */
  model: string;
  /** Model-card fields that complete or override the model's card. */
  card?: CardOverrides;
  /** The shared assets folder (default: UAP_ASSETS, else ../shared/assets). */
  assets?: string;
  /** Where it runs (initBackend's choice). */
  backend: Backend;
}

export interface LoadOptions {
  /** Where it runs (initBackend's choice): ONNX Runtime for importable models when `engine.onnx`, else TF.js. */
  backend: Backend;
  /** The shared assets folder (default: UAP_ASSETS, else ../shared/assets). */
  assets?: string;
  /** Card fields that override the found card's (preprocessing, class count, labels). */
  card?: CardOverrides;
}

/**
 * ImageNet's class names (assets' data/labels/imagenet1k_names.txt, in the standard sorted-wnid order)
 * for a 1000-class model of the ImageNet label space whose card names none: "tench", not "#0".
 */
function imagenetNames(card: ModelCard, assets: string): string[] | undefined {
  if (card.labelSpace !== 'imagenet' || card.numClasses !== 1000) return undefined;
  const file = join(assets, 'data', 'labels', 'imagenet1k_names.txt');
  if (!existsSync(file)) return undefined;
  const names = readBoundedText(file, { what: 'ImageNet class names' })
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return names.length === 1000 ? names : undefined;
}

/** Loads the classifier a card describes; its logits take pixel-space images. */
export async function loadClassifier(spec: string | ModelCard, opts: LoadOptions): Promise<Classifier> {
  // 0.1 called the field `engine`; a job or call still naming it would fail deep inside with no hint.
  if (!opts.backend)
    throw new TypeError(
      `loadClassifier: no backend; pass { backend: await initBackend() }${'engine' in opts ? " (0.1's `engine` field is now `backend`)" : ''}`,
    );
  const card = typeof spec === 'string' ? findCard(spec, opts.card, opts.assets) : spec;
  const assets = assetsDir(opts.assets);
  const modelPath = resolveCardPath(card, card.model, assets);
  if (!existsSync(modelPath)) {
    const hint = card.model.startsWith('${assets}/')
      ? ` (${assetsHint(assets)}: pass the folder holding models/ and data/ as {assets} or set UAP_ASSETS)`
      : '';
    throw new UsageError(`model ${card.name}: ${modelPath} not found${hint}`);
  }
  // Read first: a bad labels file fails the load before any work.
  const labels = cardLabels(card, assets) ?? imagenetNames(card, assets);
  // Model files the engine imports and exports whole (a model.json's weights lie in other files).
  const exportable = (card.format === 'onnx' || card.format === 'tflite') && opts.backend.onnx;
  const cache = exportable ? loadCacheFor(card, modelPath, cardWnids(card, assets)) : undefined;
  if (cache?.cache.has(cache.key(opts.backend.device))) {
    // The card lookup's parse of the file is not needed with a kept export: gone before the workers start.
    forgetParsedOnnx();
    collectGarbage();
    const probe = probeImage(card.inputShape);
    const cached = await cachedRuntime(cache, card.inputShape, opts.backend.device, probe).finally(() => probe.dispose());
    if (cached) return fromCachedExport(card, modelPath, assets, labels, opts, cached);
  }
  // The reference run's process starts now, while the file is parsed (onnx/reference.ts).
  const runner = exportable && card.format === 'onnx' ? await FileRunner.start() : undefined;
  try {
    return await loadFound(card, modelPath, assets, labels, opts, runner, cache);
  } finally {
    runner?.dispose();
  }
}

/**
 * A classifier on the runtime of an export kept from an earlier load of the same file: no Net in
 * memory; TF.js's graph (a feature model, TF.js logits) reads the file again on first use.
 */
async function fromCachedExport(
  card: ModelCard,
  modelPath: string,
  assets: string,
  labels: string[] | undefined,
  opts: LoadOptions,
  cached: { runtime: Runtime; entry: string },
): Promise<Classifier> {
  const netNow = netRereader(card, modelPath, assets)!;
  const { forward, release } = lazyTfForward(netNow, card.inputShape);
  const rt = { runtime: cached.runtime, runsOn: runsOnOnnx(opts.backend.device) };
  return { ...(await assemble(card, modelPath, labels, opts, { forward, release, netNow, rt })), cachedExport: cached.entry };
}

/** TF.js's forward pass of a Net, its graph built on first use (and freed by `release`). */
function lazyTfForward(netNow: () => Net, shape: ImageShape): { forward: (x: tf.Tensor4D) => tf.Tensor; release: () => void } {
  let graph: PlainGraph | undefined;
  return {
    forward: (x) => runPlainGraph((graph ??= netToTfGraph(netNow(), shape)), x),
    release: () => {
      if (graph) tf.dispose(graph.owned);
    },
  };
}

/** loadClassifier once the card and its model file are found; `runner` runs an .onnx file for the probe's reference. */
async function loadFound(
  card: ModelCard,
  modelPath: string,
  assets: string,
  labels: string[] | undefined,
  opts: LoadOptions,
  runner?: FileRunner,
  cache?: LoadCache,
): Promise<Classifier> {
  let forward: (x: tf.Tensor4D) => tf.Tensor;
  let release: () => void;
  let net: Net | undefined;
  let reference: FileReference | undefined;
  let externalData: boolean | undefined;
  const reread = netRereader(card, modelPath, assets);
  /** The Net while the main thread holds it, else read again. */
  const netNow = (): Net => net ?? reread!();
  try {
    if (card.format === 'graph') {
      const model = await tf.loadGraphModel(fileHandler(modelPath));
      if (model.inputs[0]?.shape) checkInputShape(card, modelPath, model.inputs[0].shape);
      // GraphModels run on TF.js's own ops, between preprocessing and output mapping steps.
      const adapters = cardAdapters(card, cardWnids(card, assets));
      forward = (x) => {
        const y = model.execute(adapters.pre(x), card.logitsLayer);
        if (Array.isArray(y))
          throw new UsageError(`model ${card.name}: the graph has several outputs; name the logits node in "logitsLayer"`);
        return adapters.post(y);
      };
      release = () => {
        model.dispose();
        adapters.dispose();
      };
    } else {
      if (card.format === 'onnx') ({ net, reference, externalData } = readNetAndReference(card, modelPath, assets));
      else net = await loadNet(card, modelPath, assets);
      // The parsed file, now in the Net: gone before the export writes the weights again.
      if (card.format === 'onnx') collectGarbage();
      // Built on first use: on ONNX Runtime, TF.js only runs a probe image (below).
      ({ forward, release } = lazyTfForward(netNow, card.inputShape));
    }
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(
      `model ${card.name}: ${modelPath} could not be loaded as a ${card.format} model (${(e as Error).message.split('\n')[0]})`,
    );
  }
  // The probe runs node by node, each node's weights in TF.js only while it runs (netToPassingTfGraph).
  const probe = checkedLogits(card, (x) => runPlainGraph(netToPassingTfGraph(netNow(), card.inputShape), x));
  // Once the sessions hold the weights (in the file they map), the main thread lets its copy go.
  const letNetGo = () => {
    if (!reread || !net) return;
    net = undefined;
    collectGarbage();
  };
  const hasNet = net !== undefined;
  const fileCheck = reference && runner && checkOf(card, modelPath, assets, reference, runner);
  // An export that reads weights from files beside the model is not kept: the key hashes the model file only.
  const keep = externalData ? undefined : cache;
  const rt =
    hasNet && opts.backend.onnx
      ? await withOnnx(netNow, card.inputShape, probe, opts.backend.device, letNetGo, fileCheck, keep)
      : undefined;
  return assemble(card, modelPath, labels, opts, { forward, release, netNow: hasNet ? netNow : undefined, rt });
}

/** The classifier of a loaded model: TF.js's forward (and its release), its Net where it has one, and its ONNX Runtime where it runs there. */
async function assemble(
  card: ModelCard,
  modelPath: string,
  labels: string[] | undefined,
  opts: LoadOptions,
  parts: {
    forward: (x: tf.Tensor4D) => tf.Tensor;
    release: () => void;
    netNow?: () => Net;
    rt?: { runtime?: Runtime; runsOn: string };
  },
): Promise<Classifier> {
  const { forward, release, netNow, rt } = parts;
  // On ONNX Runtime, TF.js only checks the export on a probe image: its batch limits (measured with a
  // forward and a gradient pass on TF.js, many seconds for a large model) do not apply.
  let base: Classifier;
  try {
    base = await tfjsClassifier(card, forward, release, labels, { measure: !rt?.runtime });
  } catch (e) {
    await rt?.runtime?.dispose();
    throw e;
  }
  return {
    ...base,
    file: modelPath,
    runtime: rt?.runtime ?? base.runtime,
    ...(netNow
      ? {
          features: async (layers?: string[]) =>
            featureModel(
              netNow(),
              card.inputShape,
              layers,
              rt?.runtime
                ? (cut) => onnxRuntime(cut, card.inputShape, { only: ['forward', 'vjp'], device: opts.backend.device })
                : undefined,
            ),
        }
      : {}),
    runsOn: rt?.runsOn ?? base.runsOn,
    dispose: () => {
      base.dispose();
      void rt?.runtime?.dispose();
    },
  };
}

/** Loads a classifier and says where it runs. */
export async function loadModel(spec: string, opts: LoadOptions & { assets: string }, log: Log): Promise<Classifier> {
  const model = await loadClassifier(spec, opts);
  const cached = model.cachedExport ? `; its export kept from an earlier load, in ${model.cachedExport}` : '';
  log.info(`model ${model.name}: runs on ${model.runsOn ?? 'TF.js'}${model.runtime.layout ? ` (${model.runtime.layout})` : ''}${cached}`);
  return model;
}
