import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../../errors.js';
import type { Classifier } from '../../classifier/classifier.js';
import type { ModelCard } from '../../classifier/card.js';
import { findCard, loadModel, type ModelSpec } from '../../import/load.js';
import type { ImageSet } from '../../data/dataset.js';
import { dataFolder, defaultData, loadSet, setOptionsOf, type DataSpec } from '../../data/sets.js';
import { predictSet } from '../../evaluation/scoring.js';
import { methodOptions, type AttackSettings, type Method } from '../../attacks/methods.js';
import type { Log } from '../../log.js';
import { refuseUntrainable } from '../trainable.js';
import { RECORDS_FILE } from './folder.js';
import type { FinetuneOptions } from './options.js';
import type { EpochRecord } from './records.js';
import type { Executor, WorkerModel } from '../../run/executor.js';

export type { WorkerModel } from '../../run/executor.js';

/** A fine-tuning job: the model (a name or file) and its data, the attack that crafts the pools and re-attacks, the options, the output folder, and whether to resume there. */
export interface DefenceJob extends DataSpec, ModelSpec {
  out: string;
  /** How the pool members and the re-attacks are crafted (default sgd: fast and strong). */
  method?: Method;
  attack?: Partial<AttackSettings>;
  options?: Partial<FinetuneOptions>;
  resume?: boolean;
}

/** What the caller of a fine-tuning job hears and controls: its log, progress, interruption, and where pools are crafted. */
export interface FinetuneControl {
  log?: Log;
  /** Training progress inside an epoch. */
  onBatch?: (p: { round: number; epoch: number; epochs: number; done: number; total: number; loss: number }) => void;
  onEpoch?: (round: number, e: EpochRecord) => void;
  signal?: AbortSignal;
  /** Where each round's pool members are crafted (default: here, one by one; a queue's executor crafts them all at once). */
  exec?: Executor;
}

/** The job as the stages take it: its options checked, its log and assets folder resolved. */
export interface FinetuneBasis {
  job: DefenceJob;
  o: FinetuneOptions;
  ctl: FinetuneControl;
  log: Log;
  assets: string;
}

/** What every stage of a run shares, fixed before its first round. */
export interface FinetuneRun extends FinetuneBasis {
  method: Method;
  attack: AttackSettings;
  /** The training and crafting set, and its folder as workers find it. */
  X: ImageSet;
  xDir: string;
  /** The validation set (labelled: clean accuracy is the guard). */
  V: ImageSet;
  /** What the run folder records (config.json, defence.json); a resume must match it. */
  config: Record<string, unknown>;
}

/**
 * Refuses, before anything is loaded, a job that cannot run: an output path that is a file, a model
 * TF.js cannot train, no validation images, a resume with nothing to resume. The original model's card.
 */
export function refuseJob(job: DefenceJob, assets: string): ModelCard {
  if (existsSync(job.out) && !statSync(job.out).isDirectory())
    throw new UsageError(`{out} ${job.out}: is a file, expected a folder for the run`);
  const card = findCard(job.model, job.card, assets);
  refuseUntrainable(card);
  if (job.val === 'none') throw new UsageError('{val} none: fine-tuning needs validation images to keep clean accuracy in view');
  if (job.resume && !existsSync(join(job.out, RECORDS_FILE))) throw new UsageError(`{resume}: no ${RECORDS_FILE} in ${job.out}`);
  return card;
}

/** The job's sets (X sampled and limited, V labelled), its attack settings, and the configuration the run records. */
export async function openRun(basis: FinetuneBasis, model: Classifier, card: ModelCard): Promise<FinetuneRun> {
  const { job, o, assets, log } = basis;
  const defaults = defaultData(model, assets);
  const data = job.data ?? defaults.data;
  const val = job.val ?? defaults.val;
  const xDir = dataFolder(data, assets);
  const X = await loadSet(model, data, setOptionsOf(job, 'data', o.seed, { assets, log, what: 'training / crafting set X' }));
  const V = await loadSet(model, val, setOptionsOf(job, 'val', o.seed, { assets, log, what: 'validation set' }));
  if (!V.labels) throw new UsageError(`validation set ${val}: fine-tuning needs labelled validation images (to track clean accuracy)`);
  const method = job.method ?? 'sgd';
  const attack = methodOptions(method, model, job.attack ?? {});
  const config = {
    model: card.name,
    modelSpec: existsSync(job.model) ? resolve(job.model) : job.model,
    data,
    val,
    images: X.size,
    valImages: V.size,
    method,
    attack,
    finetune: o,
  };
  return { ...basis, method, attack, X, xDir, V, config };
}

/** What the network is trained to answer on X: the data's labels ('truth', when X has them), else the original model's clean predictions. */
export async function trainingTargets(run: FinetuneRun, original: Classifier): Promise<Int32Array> {
  if (run.o.trainLabels === 'truth' && run.X.labels) return run.X.labels;
  if (run.o.trainLabels === 'truth')
    run.log.warn("training set X has no labels: fine-tuning towards the original model's own clean predictions");
  return predictSet(original, run.X, null);
}

/** The model a round starts from: loaded for the attacks, its card for training, and how a worker loads it. */
export interface RoundModel {
  classifier: Classifier;
  card: ModelCard;
  worker: WorkerModel;
}

/** The job's model as given (with its card overrides). */
export async function originalModel({ job, assets, log }: FinetuneBasis, card: ModelCard): Promise<RoundModel> {
  const classifier = await loadModel(job.model, { assets, card: job.card, backend: job.backend }, log);
  return { classifier, card, worker: { spec: job.model, card: job.card } };
}

/** A fine-tuned round's model, from the card its model folder holds. */
export async function finetunedModel({ job, assets, log }: FinetuneBasis, cardFile: string): Promise<RoundModel> {
  const card = findCard(cardFile);
  const classifier = await loadModel(cardFile, { assets, backend: job.backend }, log);
  return { classifier, card, worker: { spec: resolve(cardFile) } };
}
