import { existsSync, statSync } from 'node:fs';
import { readRunConfig } from '../run/config.js';
import { writeRunConfig, writeRunMetrics, type RunConfigFile } from '../run/files.js';
import { join, resolve } from 'node:path';
import type * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import { labelName, resolveTarget } from '../classifier/classifier.js';
import { loadModel, type ModelSpec } from '../import/load.js';
import { listDataset, type ImageSet, type StreamedImages } from '../data/dataset.js';
import {
  checkDataSpec,
  dataFolder,
  defaultData,
  loadSet,
  openSet,
  saySkipped,
  setOptionsOf,
  wnidsOf,
  type DataSpec,
} from '../data/sets.js';
import { refuseResumeWithInit, type RunControl, type UniversalResult, type PassRecord } from '../attacks/universal.js';
import { craft, methodOptions, type AttackSettings, type Method } from '../attacks/methods.js';
import { criterionOf } from '../attacks/criterion.js';
import type { SgdOptions } from '../attacks/sgd.js';
import { evaluatePerturbation, foolingRate, predictSet, type Evaluation } from '../evaluation/scoring.js';
import type { Baseline } from '../evaluation/noiseScore.js';
import { runMetrics } from '../evaluation/metrics.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import { localExecutor, type Executor, type SetPlace } from '../run/executor.js';
import { lpNorm } from '../math/lp.js';
import { namedLog, type Log } from '../log.js';
import { writePerturbation, writeExamples } from '../run/write.js';
import { provenance } from '../run/provenance.js';
import { fingerprintMismatch, hasCheckpoint, folderCheckpoints } from '../io/checkpoint.js';
import { lockRunDir } from '../io/lock.js';
import { assetsDir } from '../paths.js';
import { UsageError } from '../errors.js';
import { loadPerturbation, type PerturbationFormat } from '../perturbation/file.js';
import { evaluateWithNoise, scoreProgress, writePerImage, type ScoreProgress } from './scoring.js';

/** Options of `uap compute`: the model, X and the validation images, the method and its settings, the run folder. */
export interface ComputeJob extends DataSpec, ModelSpec {
  out: string;
  options: Partial<AttackSettings>;
  resume?: boolean;
  /** Start afresh in an `out` folder that holds an unfinished run (replacing it). */
  force?: boolean;
  /** A saved perturbation (.npy) to start from. */
  init?: string;
  /** How the `init` file is stored (default: detected). */
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
  queue?: QueueOption;
}

/** What `computeJob` found (also written to the run folder: config.json, metrics.json, the perturbation and pictures). */
export interface ComputeSummary {
  config: RunConfigFile;
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

/**
 * The whole `uap compute` job: load the model and both image sets, run the method with per-pass
 * checkpoints, evaluate on X and on the validation set against random noise of the same norm, and
 * write the run directory.
 */
export async function computeJob(job: ComputeJob, ctl: ComputeControl = {}): Promise<ComputeSummary> {
  const log = namedLog(ctl.log);
  if (existsSync(job.out) && !statSync(job.out).isDirectory())
    throw new UsageError(`{out} ${job.out}: is a file, expected a folder for the run`);
  checkDataSpec(job);
  checkFreshRun(job, log);
  const unlock = lockRunDir(job.out, `uap compute -o ${job.out}`);
  const assets = assetsDir(job.assets);
  const model =
    ctl.model ??
    (await loadModel(job.model, { assets, card: job.card, backend: job.backend }, log).catch((e: unknown) => {
      unlock();
      throw e;
    }));
  try {
    const plan = await planRun(job, model, assets, log);
    const config = await runConfig(job, model, plan);
    // A resumed run keeps its original config.json (a refused resume must not overwrite it).
    if (!job.resume) writeRunConfig(job.out, config);
    const { res, scored } = await withExecutor(job.queue, log, async (exec) => {
      const res = await craftRun(job, model, plan, exec, ctl, log);
      return { res, scored: await scoreRun(job, model, plan, res, exec, ctl, log) };
    });
    const { v, cleanPred: _cp, ...result } = res;
    try {
      await writePerturbation(job.out, v);
      await writeExamples(join(job.out, 'examples.png'), model, plan.V ?? plan.X, v, scored.onVal ?? scored.onX);
      writeRunMetrics(job.out, {
        ...runMetrics(model, v, plan.options, result, scored.onX, {
          onVal: scored.onVal,
          randomNoiseOnVal: scored.randomOnVal,
          targetOnVal: scored.targetOnVal,
          ...(scored.classesOnVal ? { classesOnVal: scored.classesOnVal } : {}),
        }),
        validationDetail: scored.detail ?? null,
      });
    } finally {
      v.dispose();
    }
    const { detail: _d, ...figures } = scored;
    return { config, result, ...figures, out: job.out };
  } finally {
    if (!ctl.model) model.dispose();
    unlock();
  }
}

/** What computeJob takes beside the job: the pass runner's controls, a log, a model already loaded, scoring progress. */
export type ComputeControl = Omit<RunControl, 'checkpoints' | 'resume' | 'init'> & {
  log?: Log;
  model?: Classifier;
  onScore?: ScoreProgress;
};

/** The run resolved against its model: method, criterion, full options, the image sets and the warm start. */
interface RunPlan {
  method: Method;
  target?: number;
  classes?: number[];
  options: AttackSettings;
  seed: number;
  assets: string;
  dataDir: string;
  valDir: string;
  listed: number;
  X: ImageSet;
  V?: StreamedImages;
  init?: tf.Tensor3D;
}

/**
 * Resolves the job against the model and opens its images. The files X is made of are counted before
 * any is decoded, so a resume with other images or settings is refused at once.
 */
async function planRun(job: ComputeJob, model: Classifier, assets: string, log: Log): Promise<RunPlan> {
  const defaults = defaultData(model, assets);
  const seed = job.options.seed ?? 0;
  const method = job.method ?? 'algorithm1';
  const target = resolveTarget(job.target, model);
  const classes = job.classes?.map((c) => resolveTarget(c, model, 'classes')!);
  const options = methodOptions(method, model, { ...job.options, ...(classes ? { classes } : {}) }, target);
  const dataDir = dataFolder(job.data ?? defaults.data, assets, (m) => log.info(`crafting set X: ${m}`));
  const xOptions = setOptionsOf(job, 'data', seed, { assets, log, what: 'crafting set X' });
  const listed = listDataset(dataDir, {
    labelsFile: xOptions.labels,
    limit: xOptions.limit,
    sample: xOptions.sample,
    allowPartial: xOptions.allowPartial,
    labelNames: model.labels,
    wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined,
  }).length;
  if (job.resume) refuseChangedResume(job.out, listed, { method, norm: options.norm, xi: options.xi, seed: options.seed });
  const X = await loadSet(model, dataDir, xOptions);
  const valDir = job.val ?? defaults.val;
  const V =
    job.val === 'none' ? undefined : openSet(model, valDir, setOptionsOf(job, 'val', seed, { assets, log, what: 'validation set' }));
  refuseResumeWithInit(job.resume, job.init); // before reading the {init} file
  const init = job.init ? loadPerturbation(job.init, model, log, job.initFormat) : undefined;
  return { method, target, classes, options, seed, assets, dataDir, valDir, listed, X, V, init };
}

/** A resume is refused when X lists other files or the settings that shape v differ from the first run's. */
function refuseChangedResume(out: string, listed: number, settings: Record<string, unknown>): void {
  const before = readRunConfig(out)?.listed;
  if (before !== undefined && before !== listed)
    throw new UsageError(
      `{resume}: the run in ${out} crafted on ${before} listed images of X, not ${listed} (same {data}, {limit} and {sample} as the first run?)`,
    );
  const mismatch = fingerprintMismatch(out, settings);
  if (mismatch) throw new UsageError(mismatch);
}

/** config.json of the run: what was asked, every option with its default, provenance. */
async function runConfig(job: ComputeJob, model: Classifier, plan: RunPlan): Promise<RunConfigFile> {
  const { X, V } = plan;
  return {
    model: model.name,
    modelSpec: existsSync(job.model) ? resolve(job.model) : job.model,
    assets: plan.assets,
    data: plan.dataDir,
    val: V ? plan.valDir : null,
    listed: plan.listed,
    images: X.size,
    valImages: V?.size ?? 0,
    method: plan.method,
    // How the validation set was chosen: the run's analyses (graph, baseline) score the same images.
    valLabels: job.valLabels ?? null,
    valLimit: job.valLimit ?? null,
    valSample: job.valSample ?? null,
    // Card fields given as flags (an ONNX model's mean / std): the analyses of this run load the same model.
    ...(job.card && Object.keys(job.card).length ? { modelCard: job.card } : {}),
    ...plan.options,
    targetName: plan.target !== undefined ? labelName(model, plan.target) : null,
    init: job.init ?? null,
    // A resume keeps the first run's config.json: its provenance is not hashed again.
    provenance: job.resume
      ? undefined
      : await provenance({ modelFile: model.file, runsOn: model.runsOn, seed: plan.seed, data: X.items, val: V?.items }),
  };
}

/** Crafts v with the method: checkpoints in the run folder, validation per pass when asked, SGD's steps on the executor. */
async function craftRun(
  job: ComputeJob,
  model: Classifier,
  plan: RunPlan,
  exec: Executor,
  ctl: ComputeControl,
  log: Log,
): Promise<UniversalResult> {
  const { X, V, options, method, init } = plan;
  if (job.valPerPass && !V) throw new UsageError('{valPerPass}: needs a validation set (not {val} none)');
  let cleanV: Promise<Int32Array> | undefined;
  const scorePass =
    job.valPerPass && V
      ? async (v: tf.Tensor3D) =>
          foolingRate(await (cleanV ??= predictSet(model, V, null, options.batchSize)), await predictSet(model, V, v, options.batchSize))
      : undefined;
  // Only SGD-UAP's steps shard; the other methods craft here whatever the executor.
  const onX = { model, set: X, place: place(job, 'data', plan.dataDir) };
  const shardGradients = method === 'sgd' ? await exec.gradients(onX, options as SgdOptions) : undefined;
  if (exec !== localExecutor && !shardGradients)
    log.info(`${method} crafts here (only SGD-UAP's steps go to ${exec.where}); the validation set is scored there`);
  const control = {
    ...ctl,
    scorePass,
    checkpoints: folderCheckpoints<PassRecord>(job.out),
    resume: job.resume,
    init,
    shardGradients,
    onResume: ctl.onResume ?? ((done: number) => log.info(`resuming from pass ${done} (checkpoint in ${job.out})`)),
  };
  const res = await craft(model, X, method, options, control).finally(() => init?.dispose());
  log.info(`stopped: ${res.stopReason}`);
  if (lpNorm(res.v, 'inf') === 0)
    log.warn('the perturbation is zero: no image of X could be moved (try a larger {xi}, more passes, or another method)');
  return res;
}

/** Where a job's image set (X or validation) is for a worker. */
function place(job: ComputeJob, role: 'data' | 'val', dir: string): SetPlace {
  const data = (role === 'data' ? job.data : job.val) ?? null;
  return { model: { spec: job.model, card: job.card }, data, role, dir, strict: job.strict };
}

/** v scored on X, and on validation beside random noise of its own norms, with the criterion's own success there. */
async function scoreRun(
  job: ComputeJob,
  model: Classifier,
  plan: RunPlan,
  res: UniversalResult,
  exec: Executor,
  ctl: ComputeControl,
  log: Log,
) {
  const { X, V, options } = plan;
  const onX = await evaluatePerturbation(model, X, res.v, { cleanPred: res.cleanPred, batchSize: options.batchSize });
  const scored = V
    ? await evaluateWithNoise(
        model,
        V,
        res.v,
        [
          { norm: options.norm, xi: lpNorm(res.v, options.norm) },
          { norm: 2, xi: lpNorm(res.v, 2) },
        ],
        job.randomDraws ?? 3,
        { batchSize: options.batchSize, onBatch: scoreProgress(ctl.onScore, V), exec, place: place(job, 'val', plan.valDir) },
      )
    : undefined;
  if (V) saySkipped(V, log, 'validation set');
  const onVal = scored?.ev;
  // The criterion's own success on validation, as a pass records it on X.
  const success = onVal ? criterionOf(plan.target, plan.classes).figures(onVal.cleanPred, onVal.advPred) : {};
  return {
    onX,
    onVal,
    randomOnVal: scored ? { sameLp: scored.baselines[0], sameL2: scored.baselines[1] } : undefined,
    targetOnVal: success.targetSuccess,
    classesOnVal:
      success.attackedFoolingRate !== undefined ? { attacked: success.attackedFoolingRate, kept: success.keptRate ?? 0 } : undefined,
    detail: scored ? writePerImage(job.out, model, scored.perImage) : undefined,
  };
}

/**
 * A fresh run into a folder that holds an unfinished run (a checkpoint, no metrics.json) would
 * replace it silently: refused unless `force`; a finished run there is replaced with a notice.
 */
function checkFreshRun(job: ComputeJob, log: Log): void {
  if (job.resume && job.force)
    throw new UsageError('{resume} and {force}: one continues the run in {out}, the other replaces it; give one');
  if (job.resume || !hasCheckpoint(job.out)) return;
  const finished = existsSync(join(job.out, 'metrics.json'));
  if (!finished && !job.force)
    throw new UsageError(`{out} ${job.out}: holds an unfinished run; {resume} continues it, {force} starts afresh and replaces it`);
  log.warn(`{out} ${job.out}: replacing the ${finished ? 'finished' : 'unfinished'} run there`);
}
