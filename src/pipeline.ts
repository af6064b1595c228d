import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from './tf.js';
import type { Classifier } from './model/classifier.js';
import { loadClassifier, type CardOverrides } from './model/load.js';
import { listDataset, loadImages, openImages, type ImageSet, type StreamedImages } from './data/dataset.js';
import { itemName, labelsOf, type ImageItem, type ImageSource } from './data/source.js';
import { fashionSplitFolder } from './data/fashion.js';
import { refuseResumeWithInit, type RunControl, type UniversalResult, UNIVERSAL_DEFAULTS } from './attacks/universal.js';
import { methodOf, type AttackSettings, type Method } from './attacks/methods.js';
import { targetSuccessRate } from './attacks/passes.js';
import { classDiscriminative } from './attacks/criterion.js';
import { labelName } from './model/classifier.js';
import { concatLabels, evaluatePerturbation, forEachBatch, foolingRate, predictMany, predictSet, scorePredictions, type Evaluation } from './analysis/fooling.js';
import type { PerImage } from './analysis/perImage.js';
import { baselineOf, joinParts, noiseDraws, scorePart, type Baseline } from './analysis/noiseScore.js';
import { queueGradients, scoreOnQueue, type QueueScoring } from './scale/coordinator.js';
import type { SgdOptions } from './attacks/sgd.js';
import { argmaxRows } from './model/compute.js';
import { evaluationSummary, runMetrics } from './analysis/metrics.js';
import { forwardLogits } from './model/compute.js';
import { randomPerturbation } from './math/noise.js';
import { lpNorm, defaultXi, type Norm } from './math/lp.js';

export { defaultXi };
export type { Baseline };
import { readNpy } from './io/npy.js';
import { writeJson, writePerturbation, writeExamples, writeText } from './io/run.js';
import { provenance } from './io/provenance.js';
import { fingerprintMismatch, hasCheckpoint } from './io/checkpoint.js';
import { lockRunDir } from './io/lock.js';
import { assetsDir, assetsHint, EMBEDDED_DIR } from './paths.js';
import { UsageError, withOptionNames } from './errors.js';
import { readArrayFile, toPixelsHwc, type PerturbationFormat } from './io/perturbationFile.js';

/** Where the images of a run come from. Unset folders default by the model's label space. */
export interface DataSpec {
  /** Crafting set X. */
  data?: string;
  /** Validation set. */
  val?: string;
  labels?: string;
  valLabels?: string;
  limit?: number;
  valLimit?: number;
  /** A seeded random sample of this many images of X / of the validation set (seed: the run's --seed). */
  sample?: number;
  valSample?: number;
  strict?: boolean;
}

export interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  /** True when the log renders the {option} templates of messages itself (the CLI's, as flags). */
  templates?: boolean;
}
const silent: Log = { info: () => {}, warn: () => {}, templates: true };

/** The caller's log, given messages with option names in place of {option} templates. */
export function namedLog(log: Log | undefined): Log {
  if (!log) return silent;
  if (log.templates) return log;
  return { info: (m) => log.info(withOptionNames(m)), warn: (m) => log.warn(withOptionNames(m)), templates: true };
}

/** Default folders: the ImageNet sample/validation images, or the embedded Fashion-MNIST split. */
export function defaultData(model: Classifier, assets: string): { data: string; val: string } {
  return defaultFolders(model.labelSpace, assets);
}

/** The default crafting and validation folders of a label space. */
export function defaultFolders(space: 'imagenet' | 'own', assets: string): { data: string; val: string } {
  if (space === 'imagenet') return { data: join(assets, 'data', 'imagenet-sample-images'), val: join(assets, 'data', 'ilsvrc2012_val_1300') };
  return { data: join(EMBEDDED_DIR, 'images', 'craft'), val: join(EMBEDDED_DIR, 'images', 'val') };
}

/** index -> wnid of the ImageNet label space, when the assets folder has the list. */
export function wnidsOf(assets: string): string[] | undefined {
  const f = join(assets, 'data', 'labels', 'imagenet1k_wnids_sorted.txt');
  return existsSync(f) ? readFileSync(f, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean) : undefined;
}

export type { Method };

/** A method's full options: its defaults, the radius for the model's input size, the given ones, the target. */
export function methodOptions(method: Method, model: Classifier, given: Partial<AttackSettings>, target?: number): AttackSettings {
  const norm = given.norm ?? UNIVERSAL_DEFAULTS.norm;
  return methodOf(method).options({ xi: defaultXi(norm, model.inputShape), ...given, norm, ...(target !== undefined ? { target } : {}) });
}

/** Crafts a universal perturbation with the chosen method. */
export function craft(model: Classifier, X: ImageSet, method: Method, options: AttackSettings, ctl: RunControl = {}): Promise<UniversalResult> {
  return methodOf(method).craft(model, X, options, ctl);
}

/** A --target (or one of --classes, `field`) given as a class index or a label name (exact, or the first comma-separated name). */
export function resolveTarget(target: number | string | undefined, model: Classifier, field = 'target'): number | undefined {
  if (target === undefined) return undefined;
  const asNumber = typeof target === 'number' ? target : /^\d+$/.test(target.trim()) ? Number(target) : undefined;
  if (asNumber !== undefined) {
    if (asNumber >= model.numClasses) throw new UsageError(`{${field}} ${target}: the model has ${model.numClasses} classes (0..${model.numClasses - 1})`);
    return asNumber;
  }
  const want = String(target).trim().toLowerCase();
  const names = model.labels ?? [];
  const i = names.findIndex((n) => n.toLowerCase() === want || n.toLowerCase().split(',')[0].trim() === want);
  if (i < 0) throw new UsageError(`{${field}} ${target}: no class of model ${model.name} has that name (give an index 0..${model.numClasses - 1} or a label name)`);
  return i;
}

/** Loads a classifier and says where it runs. */
export async function loadModel(spec: string, opts: { assets: string; card?: CardOverrides }, log: Log): Promise<Classifier> {
  const model = await loadClassifier(spec, opts);
  log.info(`model ${model.name}: runs on ${model.engine ?? 'TF.js'}${model.runtime?.layout ? ` (${model.runtime.layout})` : ''}`);
  return model;
}

/**
 * The image sets that come with uap, by name: 'fashion:craft' and 'fashion:val' (the embedded
 * Fashion-MNIST images), 'fashion:train' and 'fashion:test' (all 60,000 + 10,000, from Debian's
 * dataset-fashion-mnist, unpacked once into the cache), 'imagenet:sample' and 'imagenet:val' (in the assets folder). Anything else is
 * a folder path.
 */
export function dataFolder(spec: string, assets: string, say?: (m: string) => void): string {
  const named: Record<string, () => string> = {
    'fashion:craft': () => defaultFolders('own', assets).data,
    'fashion:val': () => defaultFolders('own', assets).val,
    'fashion:train': () => fashionSplitFolder('train', say),
    'fashion:test': () => fashionSplitFolder('test', say),
    'imagenet:sample': () => defaultFolders('imagenet', assets).data,
    'imagenet:val': () => defaultFolders('imagenet', assets).val,
  };
  if (named[spec]) {
    if (spec.startsWith('imagenet:') && !assets) throw new UsageError(`data ${spec}: ${assetsHint(assets)}; pass the folder holding models/ and data/ as {assets} or set UAP_ASSETS`);
    return named[spec]();
  }
  if (/^[a-z]+:[a-z]+$/.test(spec) && !existsSync(spec)) throw new UsageError(`data ${spec}: no such named set (${Object.keys(named).join(', ')}) or folder`);
  return spec;
}

export interface SetOptions {
  labels?: string;
  limit?: number;
  sample?: { count: number; seed: number };
  strict?: boolean;
  assets?: string;
  log?: Log;
  what?: string;
}

/** Lists one image set for `model` (a folder, tar shards or a named set: see dataFolder), checking its labels. */
function listSet(model: Classifier, dirOrName: string, opts: SetOptions): { items: ImageItem[]; dir: string; log: Log; what: string } {
  const log = namedLog(opts.log);
  const assets = assetsDir(opts.assets);
  const what = opts.what ?? 'images';
  const dir = dataFolder(dirOrName, assets, (m) => log.info(`${what}: ${m}`));
  const items = listDataset(dir, {
    labelsFile: opts.labels,
    limit: opts.limit,
    sample: opts.sample,
    wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined,
    labelNames: model.labels,
    warn: (m) => log.warn(`${what}: ${m}`),
  });
  const bad = items.find((i) => i.label !== undefined && (i.label < 0 || i.label >= model.numClasses));
  if (bad) throw new UsageError(`${what}: label ${bad.label} of ${itemName(bad)} is outside the model's ${model.numClasses} classes`);
  return { items, dir, log, what };
}

/**
 * Lists and decodes one image set for `model` into memory (crafting sets, which every pass reads),
 * warning about skipped files. `assets` defaults as everywhere (the `assets` option, else $UAP_ASSETS).
 */
export async function loadSet(model: Classifier, dirOrName: string, opts: SetOptions = {}): Promise<ImageSet> {
  const { items, dir, log, what } = listSet(model, dirOrName, opts);
  const { set, skipped } = await loadImages(items, model.inputShape, { strict: opts.strict });
  if (skipped.length > 0)
    log.warn(`${what}: skipped ${skipped.length} of ${items.length} files that could not be decoded (first: ${skipped[0].path}: ${skipped[0].reason}); {strict} makes this an error`);
  log.info(`${what}: ${set.size} ${set.labels ? 'labelled' : 'unlabelled'} images from ${dir}`);
  return set;
}

/** After a pass over a streamed set: how many files did not decode (each left out of every figure). */
export function saySkipped(set: StreamedImages, log: Log, what: string): void {
  const s = set.skipped;
  if (s.length) log.warn(`${what}: skipped ${s.length} of ${set.listed.length} files that could not be decoded, not counted in any figure (first: ${s[0].path}: ${s[0].reason}); {strict} makes this an error`);
}

/**
 * Lists one image set for `model` to be read batch by batch as it is scored (validation sets: any
 * size in bounded memory). Files that cannot be decoded are found, said and left out as they are met.
 */
export function openSet(model: Classifier, dirOrName: string, opts: SetOptions = {}): StreamedImages {
  const { items, dir, log, what } = listSet(model, dirOrName, opts);
  log.info(`${what}: ${items.length} ${labelsOf(items) ? 'labelled' : 'unlabelled'} images listed in ${dir} (decoded as they are scored)`);
  let said = false;
  return openImages(items, model.inputShape, {
    strict: opts.strict,
    onSkip: (item, reason) => {
      if (said) return;
      said = true;
      log.warn(`${what}: ${itemName(item)} could not be decoded (${reason}); it and any other such file are left out (counted at the end)`);
    },
  });
}

export interface ComputeJob extends DataSpec {
  model: string;
  /** Model-card fields that complete or override the model's card. */
  card?: CardOverrides;
  assets?: string;
  out: string;
  options: Partial<AttackSettings>;
  resume?: boolean;
  /** Start afresh in an --out that holds an unfinished run (replacing it). */
  force?: boolean;
  /** A saved perturbation (.npy) to start from. */
  init?: string;
  /** How the --init file is stored (default: detected). */
  initFormat?: PerturbationFormat;
  /** 'algorithm1' (the paper, default) or 'sgd' (SGD-UAP). */
  method?: Method;
  /** Targeted: a class index or label name every image is pushed to. */
  target?: number | string;
  /** Class-discriminative (sgd): the classes (indices or label names) whose images v fools; the others keep their labels. */
  classes?: (number | string)[];
  /** Random-noise baseline draws for the comparison in metrics.json. */
  randomDraws?: number;
  /** Score the validation set after every pass too (the report then draws X and validation per pass). */
  valPerPass?: boolean;
  /**
   * On `uap worker`s through this BullMQ queue: SGD-UAP's gradient shards (options.gradShard images
   * each) and the scoring of the validation set; the same v and figures as locally with the same options.
   */
  queue?: { url: string; shardSize?: number };
}

export interface ComputeSummary {
  config: Record<string, unknown>;
  result: Omit<UniversalResult, 'v' | 'cleanPred'>;
  onX: Evaluation;
  onVal?: Evaluation;
  /** Random noise on the validation set with v's own norms: same Lp (the constraint's) and same L2. */
  randomOnVal?: { sameLp: Baseline; sameL2: Baseline };
  /** Targeted runs: share of validation images (not already of the target) that v sends to the target. */
  targetOnVal?: number;
  /** Class-discriminative runs, on validation: fooling rate on the attacked classes, share of the others that kept their label. */
  classesOnVal?: { attacked: number; kept: number };
  out: string;
}

/** uap's own perturbation files (runs, checkpoints): HWC in pixel units. */
export const OWN_FORMAT: PerturbationFormat = { layout: 'hwc', units: 'pixels' };

/**
 * Reads a perturbation (.npy, or an array of a .npz) in any layout and units (see PerturbationFormat),
 * as HWC pixels fitted to the model's input: same size, or resized (bilinear).
 */
export function loadPerturbation(file: string, model: Classifier, log: Log = silent, format: PerturbationFormat = {}): tf.Tensor3D {
  log = namedLog(log);
  const got = toPixelsHwc(readArrayFile(file, format.array), format, model, file);
  const [h, w] = model.inputShape;
  if (got.layout !== 'hwc' || got.units !== 'pixels') log.info(`perturbation ${file}: read as ${got.layout} in ${got.units === 'pixels' ? 'pixel' : got.units} units`);
  const largest = got.data.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
  if (largest > 255) log.warn(`perturbation ${file}: values reach ${largest.toPrecision(4)} pixels, beyond anything pixels in [0, 255] can take (x + v is clipped); are its {units} right?`);
  const v = tf.tensor3d(got.data, got.shape);
  if (got.shape[0] === h && got.shape[1] === w) return v;
  log.warn(`perturbation ${file}: resized from ${got.shape[0]}x${got.shape[1]} to ${h}x${w} (bilinear)`);
  const r = tf.tidy(() => tf.image.resizeBilinear(v, [h, w]) as tf.Tensor3D);
  v.dispose();
  return r;
}

/** Told how many images of the set being scored are done, of how many listed. */
export type ScoreProgress = (done: number, total: number) => void;

function scoreProgress(on: ScoreProgress | undefined, set: ImageSource): ((done: number) => void) | undefined {
  const total = set.size;
  return on && ((done) => on(done, total));
}

/** Random-noise baseline: fooling rates of `draws` seeded random perturbations of norm `xi` (one pass over the set). */
export async function randomBaseline(model: Classifier, set: ImageSource, norm: Norm, xi: number, draws: number, cleanPred: Int32Array): Promise<Baseline> {
  return baselineOf(norm, xi, cleanPred, await predictMany(model, set, noiseDraws(model.inputShape, norm, xi, draws)));
}

/**
 * v's figures on a set beside random noise at each of `radii`, all in ONE pass over the set (each
 * image read or decoded once: a streamed validation set of 50,000 images is not decoded 2 + 2 x draws
 * times), with the per-image facts of v (confidences, margins) on the way. With `queue`, the set is
 * scored in shards by `uap worker`s (src/scale) and joined in order: the same figures.
 */
export async function evaluateWithNoise(
  model: Classifier,
  set: StreamedImages | ImageSet,
  v: tf.Tensor3D,
  radii: { norm: Norm; xi: number }[],
  draws: number,
  opts: { batchSize?: number; onBatch?: (done: number) => void; queue?: QueueScoring } = {},
): Promise<{ ev: Evaluation; baselines: Baseline[]; perImage: PerImage }> {
  const data = v.dataSync() as Float32Array;
  const o = { radii, draws, batchSize: opts.batchSize, onBatch: opts.onBatch };
  if (opts.queue && 'listed' in set) return scoreOnQueue(opts.queue, model, set, data, o);
  const part = await scorePart(model, set, [data], o);
  const listed = 'listed' in set ? set.listed : set.items;
  return joinParts(listed, [{ start: 0 }], [part], o);
}

/** What metrics.json keeps of the per-image facts, and predictions.csv beside it. */
function writePerImage(dir: string, model: Classifier, perImage: PerImage): Record<string, unknown> {
  const name = (i: number) => labelName(model, i);
  writeText(join(dir, 'predictions.csv'), perImage.csv(name));
  return { confidence: perImage.confidence(), perClass: perImage.perClass(name), confusions: perImage.confusions(name) };
}

/**
 * The whole `uap compute` job: load the model and both image sets, run Algorithm 1 with per-pass
 * checkpoints, evaluate on X and on the validation set against random noise of the same norm, and
 * write the run directory.
 */
export async function runCompute(job: ComputeJob, ctl: Omit<RunControl, 'checkpointDir' | 'resume' | 'init'> & { log?: Log; model?: Classifier; onScore?: ScoreProgress } = {}): Promise<ComputeSummary> {
  const log = namedLog(ctl.log);
  if (existsSync(job.out) && !statSync(job.out).isDirectory()) throw new UsageError(`{out} ${job.out}: is a file, expected a folder for the run`);
  checkFreshRun(job, log);
  const unlock = lockRunDir(job.out, `uap compute -o ${job.out}`);
  const assets = assetsDir(job.assets);
  const model = ctl.model ?? (await loadModel(job.model, { assets, card: job.card }, log).catch((e: unknown) => {
    unlock();
    throw e;
  }));
  try {
    const defaults = defaultData(model, assets);
    const seed = job.options.seed ?? 0;
    const sample = (count?: number) => (count === undefined ? undefined : { count, seed });
    const method = job.method ?? 'algorithm1';
    const target = resolveTarget(job.target, model);
    const classes = job.classes?.map((c) => resolveTarget(c, model, 'classes')!);
    const options = methodOptions(method, model, { ...job.options, ...(classes ? { classes } : {}) }, target);
    const dataDir = dataFolder(job.data ?? defaults.data, assets, (m) => log.info(`crafting set X: ${m}`));
    // The files X is made of, counted before any is decoded: a resume with other images or settings is refused at once.
    const listed = listDataset(dataDir, { labelsFile: job.labels, limit: job.limit, sample: sample(job.sample), labelNames: model.labels, wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined }).length;
    if (job.resume) {
      const before = readRunConfig(job.out)?.listed;
      if (before !== undefined && before !== listed) throw new UsageError(`{resume}: the run in ${job.out} crafted on ${before} listed images of X, not ${listed} (same {data}, {limit} and {sample} as the first run?)`);
      const mismatch = fingerprintMismatch(job.out, { method, norm: options.norm, xi: options.xi, seed: options.seed });
      if (mismatch) throw new UsageError(mismatch);
    }
    warnRadius(options, model, log);
    const X = await loadSet(model, dataDir, { labels: job.labels, limit: job.limit, sample: sample(job.sample), strict: job.strict, assets, log, what: 'crafting set X' });
    const valDir = job.val ?? defaults.val;
    const V = job.val === 'none' ? undefined : openSet(model, valDir, { labels: job.valLabels, limit: job.valLimit, sample: sample(job.valSample), strict: job.strict, assets, log, what: 'validation set' });
    refuseResumeWithInit(job.resume, job.init); // before reading the {init} file
    const init = job.init ? loadPerturbation(job.init, model, log, job.initFormat) : undefined;
    const config = {
      model: model.name, modelSpec: existsSync(job.model) ? resolve(job.model) : job.model, assets, data: dataDir, val: V ? valDir : null, listed, images: X.size, valImages: V?.size ?? 0, method,
      // How the validation set was chosen: the run's analyses (graph, baseline) score the same images.
      valLabels: job.valLabels ?? null, valLimit: job.valLimit ?? null, valSample: job.valSample ?? null,
      // Card fields given as flags (an ONNX model's mean / std): the analyses of this run load the same model.
      ...(job.card && Object.keys(job.card).length ? { modelCard: job.card } : {}),
      ...options, targetName: target !== undefined ? labelName(model, target) : null, init: job.init ?? null,
    };
    // A resumed run keeps its original config.json (a refused resume must not overwrite it).
    if (!job.resume) writeJson(join(job.out, 'config.json'), { ...config, provenance: await provenance({ modelFile: model.file, engine: model.engine, seed, data: X.items, val: V?.items }) });
    let cleanV: Promise<Int32Array> | undefined;
    const scorePass = job.valPerPass && V
      ? async (v: tf.Tensor3D) => foolingRate(await (cleanV ??= predictSet(model, V, null, options.batchSize)), await predictSet(model, V, v, options.batchSize))
      : undefined;
    if (job.valPerPass && !V) throw new UsageError('{valPerPass}: needs a validation set (not {val} none)');
    const queued = (data: string | null, role: 'data' | 'val', dir: string) =>
      job.queue && { ...job.queue, model: { spec: job.model, card: job.card }, data, role, dir, strict: job.strict, warn: (m: string) => log.warn(m) };
    const remote = job.queue && method === 'sgd' ? await queueGradients(queued(job.data ?? null, 'data', dataDir)!, model, X, options as SgdOptions) : undefined;
    if (job.queue && !remote) log.info(`queue: ${method} crafts here (only SGD-UAP's steps are sharded); the validation set is scored on the workers`);
    const control = { ...ctl, scorePass, checkpointDir: job.out, resume: job.resume, init, shardGradients: remote?.shardGradients, onResume: ctl.onResume ?? ((done: number) => log.info(`resuming from pass ${done} (checkpoint in ${job.out})`)) };
    const res = await craft(model, X, method, options, control).finally(async () => {
      init?.dispose();
      await remote?.close();
    });
    log.info(`stopped: ${res.stopReason}`);
    if (lpNorm(res.v, 'inf') === 0) log.warn('the perturbation is zero: no image of X could be moved (try a larger {xi}, more passes, or another method)');
    const onX = await evaluatePerturbation(model, X, res.v, { cleanPred: res.cleanPred, batchSize: options.batchSize });
    const draws = job.randomDraws ?? 3;
    const scored = V
      ? await evaluateWithNoise(model, V, res.v, [{ norm: options.norm, xi: lpNorm(res.v, options.norm) }, { norm: 2, xi: lpNorm(res.v, 2) }], draws, { batchSize: options.batchSize, onBatch: scoreProgress(ctl.onScore, V), queue: queued(job.val ?? null, 'val', valDir) })
      : undefined;
    if (V) saySkipped(V, log, 'validation set');
    const onVal = scored?.ev;
    const targetOnVal = target !== undefined && onVal ? targetSuccessRate(onVal.cleanPred, onVal.advPred, target) : undefined;
    const discriminative = classes && classDiscriminative(classes);
    const classesOnVal = discriminative && onVal ? { attacked: discriminative.successRate(onVal.cleanPred, onVal.advPred), kept: discriminative.keptRate(onVal.cleanPred, onVal.advPred) } : undefined;
    const randomOnVal = scored ? { sameLp: scored.baselines[0], sameL2: scored.baselines[1] } : undefined;
    await writePerturbation(job.out, res.v);
    await writeExamples(join(job.out, 'examples.png'), model, V ?? X, res.v, onVal ?? onX);
    const { v, cleanPred: _cp, ...result } = res;
    const detail = scored ? writePerImage(job.out, model, scored.perImage) : undefined;
    writeJson(join(job.out, 'metrics.json'), { ...runMetrics(model, v, options, result, onX, { onVal, randomNoiseOnVal: randomOnVal, targetOnVal, ...(classesOnVal ? { classesOnVal } : {}) }), validationDetail: detail ?? null });
    v.dispose();
    return { config, result, onX, onVal, randomOnVal, targetOnVal, classesOnVal, out: job.out };
  } finally {
    if (!ctl.model) model.dispose();
    unlock();
  }
}

/** The config.json of a run folder, when it is there and readable. */
function readRunConfig(dir: string): { listed?: number } | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { listed?: number };
  } catch {
    return undefined;
  }
}

/** A radius no pixel range can use is accepted, but said: x + v is clipped to [0, 255]. */
function warnRadius(o: { norm: Norm; xi: number }, model: Classifier, log: Log): void {
  const [h, w, c] = model.inputShape;
  const most = o.norm === 'inf' ? 255 : 255 * Math.sqrt(h * w * c);
  if (o.xi > most) log.warn(`{xi} ${o.xi}: beyond what images in [0, 255] allow (${o.norm === 'inf' ? 'Linf' : 'L2'} ${most.toFixed(0)}); is it in pixel units?`);
}

/**
 * A fresh run into a folder that holds an unfinished run (a checkpoint, no metrics.json) would
 * replace it silently: refused unless `force`; a finished run there is replaced with a notice.
 */
function checkFreshRun(job: ComputeJob, log: Log): void {
  if (job.resume || !hasCheckpoint(job.out)) return;
  const finished = existsSync(join(job.out, 'metrics.json'));
  if (!finished && !job.force)
    throw new UsageError(`{out} ${job.out}: holds an unfinished run; {resume} continues it, {force} starts afresh and replaces it`);
  log.warn(`{out} ${job.out}: replacing the ${finished ? 'finished' : 'unfinished'} run there`);
}

export interface EvaluateJob extends DataSpec {
  model: string;
  card?: CardOverrides;
  assets?: string;
  perturbation: string;
  /** How the perturbation file is stored (default: detected; see PerturbationFormat). */
  format?: PerturbationFormat;
  /** Folder for metrics.json and examples.png (optional). */
  out?: string;
  batchSize?: number;
  randomDraws?: number;
  /** Score on `uap worker`s through this BullMQ queue (redis:// URL), in shards of `shardSize` images: the same figures as locally. */
  queue?: { url: string; shardSize?: number };
}

/** The model and one labelled-or-not image folder (default: its validation set), for the scoring commands. */
async function withScoringSet<T>(
  job: { model: string; card?: CardOverrides; assets?: string; data?: string; labels?: string; limit?: number; strict?: boolean },
  log: Log,
  use: (model: Classifier, set: StreamedImages, dir: string) => Promise<T>,
): Promise<T> {
  const assets = assetsDir(job.assets);
  const model = await loadModel(job.model, { assets, card: job.card }, log);
  try {
    const dir = job.data ?? defaultData(model, assets).val;
    const set = openSet(model, dir, { labels: job.labels, limit: job.limit, strict: job.strict, assets, log, what: 'images' });
    return await use(model, set, dir);
  } finally {
    model.dispose();
  }
}

/** `uap evaluate`: the figures of a saved perturbation on an image set, beside random noise of its norm. */
export async function runEvaluate(job: EvaluateJob, log: Log = silent, onScore?: ScoreProgress) {
  log = namedLog(log);
  const scoring = { ...job, data: job.val ?? job.data, labels: job.valLabels ?? job.labels, limit: job.valLimit ?? job.limit };
  return withScoringSet(scoring, log, async (model, set, dir) => {
    const v = loadPerturbation(job.perturbation, model, log, job.format);
    try {
      const normL2 = lpNorm(v, 2);
      const normInf = lpNorm(v, 'inf');
      const radii = [{ norm: 'inf' as const, xi: normInf }, { norm: 2 as const, xi: normL2 }];
      const queue = job.queue && { ...job.queue, model: { spec: job.model, card: job.card }, data: scoring.data ?? null, dir, strict: job.strict, warn: (m: string) => log.warn(m) };
      const { ev, baselines, perImage } = await evaluateWithNoise(model, set, v, radii, job.randomDraws ?? 3, { batchSize: job.batchSize, onBatch: scoreProgress(onScore, set), queue });
      saySkipped(set, log, 'images');
      const metrics = { model: model.name, perturbation: job.perturbation, folder: dir, normL2, normInf, ...evaluationSummary(ev), skipped: set.skipped.length, randomSameLinf: baselines[0], randomSameL2: baselines[1] };
      if (job.out) {
        const prov = await provenance({ modelFile: model.file, engine: model.engine, val: set.items });
        writeJson(join(job.out, 'metrics.json'), { ...metrics, detail: writePerImage(job.out, model, perImage), provenance: prov });
        await writeExamples(join(job.out, 'examples.png'), model, set, v, ev);
      }
      return metrics;
    } finally {
      v.dispose();
    }
  });
}

export interface AccuracyJob {
  model: string;
  card?: CardOverrides;
  assets?: string;
  data?: string;
  labels?: string;
  limit?: number;
  strict?: boolean;
  batchSize?: number;
}

/** `uap accuracy`: top-1 and top-5 accuracy of a model on a labelled folder (checks card and preprocessing). */
export async function runAccuracy(job: AccuracyJob, log: Log = silent) {
  log = namedLog(log);
  return withScoringSet(job, log, async (model, set, dir) => {
    const labels = set.labels;
    if (!labels) throw new UsageError(`data ${dir}: accuracy needs labelled images (class folders, wnid names or a labels file)`);
    let top1 = 0;
    let top5 = 0;
    const k = model.numClasses;
    for await (const b of set.batches(Math.min(job.batchSize ?? 32, model.maxBatch?.forward ?? 32))) {
      const x = tf.tensor4d(Float32Array.from(b.pixels), [b.items.length, ...model.inputShape]);
      const logits = await forwardLogits(model, x).finally(() => x.dispose());
      b.items.forEach((item, r) => {
        const row = logits.subarray(r * k, (r + 1) * k);
        const truth = row[item.label!];
        // Rank of the true class: how many classes score strictly higher.
        const higher = row.reduce((n, v) => n + (v > truth ? 1 : 0), 0);
        if (higher === 0) top1++;
        if (higher < 5) top5++;
      });
    }
    return { model: model.name, folder: dir, images: set.size, top1: top1 / set.size, top5: top5 / set.size };
  });
}
