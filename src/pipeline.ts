import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from './tf.js';
import type { Classifier } from './model/classifier.js';
import { loadClassifier, type CardOverrides } from './model/load.js';
import { listDataset, loadImages, type ImageSet } from './data/dataset.js';
import { computeUniversal, refuseResumeWithInit, type UniversalOptions, type RunControl, type UniversalResult, UNIVERSAL_DEFAULTS } from './attacks/universal.js';
import { computeSgdUniversal, SGD_DEFAULTS, type SgdOptions } from './attacks/sgd.js';
import { targetSuccessRate } from './attacks/passes.js';
import { labelName } from './model/classifier.js';
import { evaluatePerturbation, type Evaluation } from './analysis/fooling.js';
import { evaluationSummary, runMetrics } from './analysis/metrics.js';
import { forwardLogits } from './model/compute.js';
import { randomPerturbation } from './math/noise.js';
import { lpNorm, defaultXi, type Norm } from './math/lp.js';

export { defaultXi };
import { readNpy } from './io/npy.js';
import { writeJson, writePerturbation, writeExamples } from './io/run.js';
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

export type Method = 'algorithm1' | 'sgd';

/** A method's full options: its defaults, the radius for the model's input size, the given ones, the target. */
export function methodOptions(method: Method, model: Classifier, given: Partial<UniversalOptions> & Partial<SgdOptions>, target?: number): UniversalOptions | SgdOptions {
  const norm = given.norm ?? UNIVERSAL_DEFAULTS.norm;
  const base = { xi: defaultXi(norm, model.inputShape), ...given, norm, ...(target !== undefined ? { target } : {}) };
  return method === 'sgd' ? { ...SGD_DEFAULTS, ...base } : { ...UNIVERSAL_DEFAULTS, ...base };
}

/** Crafts a universal perturbation with the chosen method. */
export function craft(model: Classifier, X: ImageSet, method: Method, options: UniversalOptions | SgdOptions, ctl: RunControl = {}): Promise<UniversalResult> {
  return method === 'sgd' ? computeSgdUniversal(model, X, options as SgdOptions, ctl) : computeUniversal(model, X, options as UniversalOptions, ctl);
}

/** A --target given as a class index or a label name (exact, or the first comma-separated name). */
export function resolveTarget(target: number | string | undefined, model: Classifier): number | undefined {
  if (target === undefined) return undefined;
  const asNumber = typeof target === 'number' ? target : /^\d+$/.test(target.trim()) ? Number(target) : undefined;
  if (asNumber !== undefined) {
    if (asNumber >= model.numClasses) throw new UsageError(`{target} ${target}: the model has ${model.numClasses} classes (0..${model.numClasses - 1})`);
    return asNumber;
  }
  const want = String(target).trim().toLowerCase();
  const names = model.labels ?? [];
  const i = names.findIndex((n) => n.toLowerCase() === want || n.toLowerCase().split(',')[0].trim() === want);
  if (i < 0) throw new UsageError(`{target} ${target}: no class of model ${model.name} has that name (give an index 0..${model.numClasses - 1} or a label name)`);
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
 * Fashion-MNIST images), 'imagenet:sample' and 'imagenet:val' (in the assets folder). Anything else is
 * a folder path.
 */
export function dataFolder(spec: string, assets: string): string {
  const named: Record<string, () => string> = {
    'fashion:craft': () => defaultFolders('own', assets).data,
    'fashion:val': () => defaultFolders('own', assets).val,
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

/**
 * Lists and decodes one image set for `model` (a folder, or a named set: see dataFolder), warning
 * about skipped files. `assets` defaults as everywhere (the `assets` option, else $UAP_ASSETS).
 */
export async function loadSet(
  model: Classifier,
  dirOrName: string,
  opts: { labels?: string; limit?: number; sample?: { count: number; seed: number }; strict?: boolean; assets?: string; log?: Log; what?: string } = {},
): Promise<ImageSet> {
  const log = namedLog(opts.log);
  const assets = assetsDir(opts.assets);
  const dir = dataFolder(dirOrName, assets);
  const what = opts.what ?? 'images';
  const items = listDataset(dir, {
    labelsFile: opts.labels,
    limit: opts.limit,
    sample: opts.sample,
    wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined,
    labelNames: model.labels,
    warn: (m) => log.warn(`${what}: ${m}`),
  });
  const { set, skipped } = await loadImages(items, model.inputShape, { strict: opts.strict });
  if (skipped.length > 0)
    log.warn(`${what}: skipped ${skipped.length} of ${items.length} files that could not be decoded (first: ${skipped[0].path}: ${skipped[0].reason}); {strict} makes this an error`);
  const labelled = set.labels ? 'labelled' : 'unlabelled';
  log.info(`${what}: ${set.size} ${labelled} images from ${dir}`);
  const bad = set.items.find((i) => i.label !== undefined && (i.label < 0 || i.label >= model.numClasses));
  if (bad) throw new UsageError(`${what}: label ${bad.label} of ${bad.path} is outside the model's ${model.numClasses} classes`);
  return set;
}

export interface ComputeJob extends DataSpec {
  model: string;
  /** Model-card fields that complete or override the model's card. */
  card?: CardOverrides;
  assets?: string;
  out: string;
  options: Partial<UniversalOptions> & Partial<SgdOptions>;
  resume?: boolean;
  /** Start afresh in an --out that holds an unfinished run (replacing it). */
  force?: boolean;
  /** A saved perturbation (.npy) to start from. */
  init?: string;
  /** How the --init file is stored (default: detected). */
  initFormat?: PerturbationFormat;
  /** 'algorithm1' (the paper, default) or 'sgd' (SGD-UAP). */
  method?: 'algorithm1' | 'sgd';
  /** Targeted: a class index or label name every image is pushed to. */
  target?: number | string;
  /** Random-noise baseline draws for the comparison in metrics.json. */
  randomDraws?: number;
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

export interface Baseline {
  norm: Norm;
  radius: number;
  mean: number;
  min: number;
  max: number;
  draws: number;
}

/** Random-noise baseline: fooling rates of `draws` seeded random perturbations of norm `xi`. */
export async function randomBaseline(model: Classifier, set: ImageSet, norm: Norm, xi: number, draws: number, cleanPred: Int32Array): Promise<Baseline> {
  const rates: number[] = [];
  for (let d = 0; d < draws; d++) {
    const r = randomPerturbation(model.inputShape, norm, xi, 1000 + d);
    rates.push((await evaluatePerturbation(model, set, r, { cleanPred })).foolingRate);
    r.dispose();
  }
  return { norm, radius: xi, mean: rates.reduce((a, b) => a + b, 0) / draws, min: Math.min(...rates), max: Math.max(...rates), draws };
}

/**
 * The whole `uap compute` job: load the model and both image sets, run Algorithm 1 with per-pass
 * checkpoints, evaluate on X and on the validation set against random noise of the same norm, and
 * write the run directory.
 */
export async function runCompute(job: ComputeJob, ctl: Omit<RunControl, 'checkpointDir' | 'resume' | 'init'> & { log?: Log; model?: Classifier } = {}): Promise<ComputeSummary> {
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
    const options = methodOptions(method, model, job.options, target);
    const dataDir = job.data ?? defaults.data;
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
    const V = job.val === 'none' ? undefined : await loadSet(model, valDir, { labels: job.valLabels, limit: job.valLimit, sample: sample(job.valSample), strict: job.strict, assets, log, what: 'validation set' });
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
    if (!job.resume) writeJson(join(job.out, 'config.json'), config);
    const control = { ...ctl, checkpointDir: job.out, resume: job.resume, init, onResume: ctl.onResume ?? ((done: number) => log.info(`resuming from pass ${done} (checkpoint in ${job.out})`)) };
    const res = await craft(model, X, method, options, control).finally(() => init?.dispose());
    log.info(`stopped: ${res.stopReason}`);
    if (lpNorm(res.v, 'inf') === 0) log.warn('the perturbation is zero: no image of X could be moved (try a larger {xi}, more passes, or another method)');
    const onX = await evaluatePerturbation(model, X, res.v, { cleanPred: res.cleanPred, batchSize: options.batchSize });
    const onVal = V ? await evaluatePerturbation(model, V, res.v, { batchSize: options.batchSize }) : undefined;
    const targetOnVal = target !== undefined && onVal ? targetSuccessRate(onVal.cleanPred, onVal.advPred, target) : undefined;
    const draws = job.randomDraws ?? 3;
    const randomOnVal = V && onVal
      ? {
          sameLp: await randomBaseline(model, V, options.norm, lpNorm(res.v, options.norm), draws, onVal.cleanPred),
          sameL2: await randomBaseline(model, V, 2, lpNorm(res.v, 2), draws, onVal.cleanPred),
        }
      : undefined;
    await writePerturbation(job.out, res.v);
    await writeExamples(join(job.out, 'examples.png'), model, V ?? X, res.v, onVal ?? onX);
    const { v, cleanPred: _cp, ...result } = res;
    writeJson(join(job.out, 'metrics.json'), runMetrics(model, v, options, result, onX, { onVal, randomNoiseOnVal: randomOnVal, targetOnVal }));
    v.dispose();
    return { config, result, onX, onVal, randomOnVal, targetOnVal, out: job.out };
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
}

/** The model and one labelled-or-not image folder (default: its validation set), for the scoring commands. */
async function withScoringSet<T>(
  job: { model: string; card?: CardOverrides; assets?: string; data?: string; labels?: string; limit?: number; strict?: boolean },
  log: Log,
  use: (model: Classifier, set: ImageSet, dir: string) => Promise<T>,
): Promise<T> {
  const assets = assetsDir(job.assets);
  const model = await loadModel(job.model, { assets, card: job.card }, log);
  try {
    const dir = job.data ?? defaultData(model, assets).val;
    const set = await loadSet(model, dir, { labels: job.labels, limit: job.limit, strict: job.strict, assets, log, what: 'images' });
    return await use(model, set, dir);
  } finally {
    model.dispose();
  }
}

/** `uap evaluate`: the figures of a saved perturbation on an image set, beside random noise of its norm. */
export async function runEvaluate(job: EvaluateJob, log: Log = silent) {
  log = namedLog(log);
  const scoring = { ...job, data: job.val ?? job.data, labels: job.valLabels ?? job.labels, limit: job.valLimit ?? job.limit };
  return withScoringSet(scoring, log, async (model, set, dir) => {
    const v = loadPerturbation(job.perturbation, model, log, job.format);
    try {
      const ev = await evaluatePerturbation(model, set, v, { batchSize: job.batchSize });
      const normL2 = lpNorm(v, 2);
      const normInf = lpNorm(v, 'inf');
      const draws = job.randomDraws ?? 3;
      const random = {
        inf: await randomBaseline(model, set, 'inf', normInf, draws, ev.cleanPred),
        l2: await randomBaseline(model, set, 2, normL2, draws, ev.cleanPred),
      };
      const metrics = { model: model.name, perturbation: job.perturbation, folder: dir, normL2, normInf, ...evaluationSummary(ev), randomSameLinf: random.inf, randomSameL2: random.l2 };
      if (job.out) {
        writeJson(join(job.out, 'metrics.json'), metrics);
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
    for (const idx of set.batchIndices(Math.min(job.batchSize ?? 32, model.maxBatch?.forward ?? 32))) {
      const x = set.batch(idx);
      const logits = await forwardLogits(model, x).finally(() => x.dispose());
      idx.forEach((img, r) => {
        const row = logits.subarray(r * k, (r + 1) * k);
        const truth = row[labels[img]];
        // Rank of the true class: how many classes score strictly higher.
        const higher = row.reduce((n, v) => n + (v > truth ? 1 : 0), 0);
        if (higher === 0) top1++;
        if (higher < 5) top5++;
      });
    }
    return { model: model.name, folder: dir, images: set.size, top1: top1 / set.size, top5: top5 / set.size };
  });
}
