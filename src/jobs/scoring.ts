import { join } from 'node:path';
import type * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import { labelName } from '../classifier/classifier.js';
import { loadModel, type ModelSpec } from '../import/load.js';
import type { ImageSet } from '../data/imageSet.js';
import type { StreamedImages } from '../data/stream.js';
import type { ImageSource } from '../data/source.js';
import { dataFolder, defaultData, openSet, saySkipped, type DataSpec } from '../data/sets.js';
import type { Evaluation } from '../evaluation/scoring.js';
import type { PerImage, ValidationDetail } from '../evaluation/perImage.js';
import type { Baseline } from '../evaluation/noiseScore.js';
import { evaluationSummary } from '../evaluation/metrics.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import { localExecutor, type Executor, type SetPlace } from '../run/executor.js';
import { lpNorm, type Norm } from '../math/lp.js';
import { namedLog, type Log } from '../log.js';
import { writeJson, writeText, writeExamples } from '../run/write.js';
import { provenance } from '../run/provenance.js';
import { assetsDir } from '../paths.js';
import { UsageError } from '../errors.js';
import { loadPerturbation, type PerturbationFormat } from '../perturbation/file.js';
import type { JobControl } from './control.js';

/**
 * The scoring jobs: `uap evaluate` (a saved perturbation on an image set, beside random noise) and `uap
 * accuracy`, and the one-pass scoring of v beside noise that `uap compute` shares.
 */

/** Told how many images of the set being scored are done, of how many listed. */
export type ScoreProgress = (done: number, total: number) => void;

export function scoreProgress(on: ScoreProgress | undefined, set: ImageSource): ((done: number) => void) | undefined {
  const total = set.size;
  return on && ((done) => on(done, total));
}

/**
 * v's figures on a set beside random noise at each of `radii`, all in ONE pass over the set (each
 * image read or decoded once: a streamed validation set of 50,000 images is not decoded 2 + 2 x draws
 * times), with the per-image facts of v (confidences, margins) on the way. On a queue's executor, a
 * set with a place is scored in shards by `uap worker`s (src/scale) and joined in order: the same figures.
 */
export async function evaluateWithNoise(
  model: Classifier,
  set: StreamedImages | ImageSet,
  v: tf.Tensor3D,
  radii: { norm: Norm; xi: number }[],
  draws: number,
  opts: { batchSize?: number; onBatch?: (done: number) => void; exec?: Executor; place?: SetPlace } = {},
): Promise<{ ev: Evaluation; baselines: Baseline[]; perImage: PerImage }> {
  const o = { radii, draws, batchSize: opts.batchSize, onBatch: opts.onBatch };
  return (opts.exec ?? localExecutor).score({ model, set, place: opts.place }, v.dataSync() as Float32Array, o);
}

/** What metrics.json keeps of the per-image facts, and predictions.csv beside it. */
export function writePerImage(dir: string, model: Classifier, perImage: PerImage): ValidationDetail {
  const name = (i: number) => labelName(model, i);
  writeText(join(dir, 'predictions.csv'), perImage.csv(name));
  return { confidence: perImage.confidence(), perClass: perImage.perClass(name), confusions: perImage.confusions(name) };
}

/** Options of `uap evaluate`: a saved perturbation (any tool's layout) scored on an image set. */
export interface EvaluateJob extends DataSpec, ModelSpec {
  perturbation: string;
  /** How the perturbation file is stored (default: detected; see PerturbationFormat). */
  format?: PerturbationFormat;
  /** Folder for metrics.json and examples.png (optional). */
  out?: string;
  batchSize?: number;
  randomDraws?: number;
  /** Score on `uap worker`s through this BullMQ queue (redis:// URL), in shards of `shardSize` images: the same figures as locally. */
  queue?: QueueOption;
}

/** The model and one labelled-or-not image folder (default: its validation set), for the scoring commands. */
async function withScoringSet<T>(
  job: ModelSpec & { data?: string; labels?: string; limit?: number; strict?: boolean; allowPartial?: boolean },
  log: Log,
  use: (model: Classifier, set: StreamedImages, dir: string) => Promise<T>,
): Promise<T> {
  const assets = assetsDir(job.assets);
  const model = await loadModel(job.model, { assets, card: job.card, backend: job.backend }, log);
  try {
    const dir = job.data ?? defaultData(model, assets).val;
    const set = openSet(model, dir, {
      labels: job.labels,
      limit: job.limit,
      strict: job.strict,
      allowPartial: job.allowPartial,
      assets,
      log,
      what: 'images',
    });
    return await use(model, set, dir);
  } finally {
    model.dispose();
  }
}

/** `uap evaluate`: the figures of a saved perturbation on an image set, beside random noise of its norm. */
export async function evaluateJob(job: EvaluateJob, ctl: JobControl & { onScore?: ScoreProgress } = {}) {
  const log = namedLog(ctl.log);
  const onScore = ctl.onScore;
  const scoring = { ...job, data: job.val ?? job.data, labels: job.valLabels ?? job.labels, limit: job.valLimit ?? job.limit };
  return withScoringSet(scoring, log, async (model, set, dir) => {
    const v = loadPerturbation(job.perturbation, model, log, job.format);
    try {
      const normL2 = lpNorm(v, 2);
      const normInf = lpNorm(v, 'inf');
      const radii = [
        { norm: 'inf' as const, xi: normInf },
        { norm: 2 as const, xi: normL2 },
      ];
      const place: SetPlace = {
        model: { spec: job.model, card: job.card },
        data: scoring.data ?? null,
        role: 'val',
        dir,
        strict: job.strict,
      };
      const { ev, baselines, perImage } = await withExecutor(job.queue, log, (exec) =>
        evaluateWithNoise(model, set, v, radii, job.randomDraws ?? 3, {
          batchSize: job.batchSize,
          onBatch: scoreProgress(onScore, set),
          exec,
          place,
        }),
      );
      saySkipped(set, log, 'images');
      const metrics = {
        model: model.name,
        perturbation: job.perturbation,
        folder: dir,
        normL2,
        normInf,
        ...evaluationSummary(ev),
        skipped: set.skipped.length,
        randomSameLinf: baselines[0],
        randomSameL2: baselines[1],
      };
      if (job.out) {
        const prov = await provenance({ modelFile: model.file, runsOn: model.runsOn, val: set.items });
        writeJson(join(job.out, 'metrics.json'), { ...metrics, detail: writePerImage(job.out, model, perImage), provenance: prov });
        await writeExamples(join(job.out, 'examples.png'), model, set, v, ev);
      }
      return metrics;
    } finally {
      v.dispose();
    }
  });
}

/** Options of `uap accuracy`: a model on labelled images. */
export interface AccuracyJob extends ModelSpec {
  /** Score on `uap worker`s through this BullMQ queue, in shards: the same figures. */
  queue?: QueueOption;
  data?: string;
  labels?: string;
  limit?: number;
  strict?: boolean;
  /** Use the whole members of tar shards that are cut short (default: refuse them). */
  allowPartial?: boolean;
  batchSize?: number;
}

/** `uap accuracy`: top-1 and top-5 accuracy of a model on a labelled folder (checks card and preprocessing). */
export async function accuracyJob(job: AccuracyJob, ctl: JobControl = {}) {
  const log = namedLog(ctl.log);
  return withScoringSet(job, log, async (model, set, dir) => {
    if (!set.labels) throw new UsageError(`data ${dir}: accuracy needs labelled images (class folders, wnid names or a labels file)`);
    // The rank of each image's true label among its clean logits: here, or in shards on the workers (the same ranks).
    const place: SetPlace = {
      model: { spec: job.model, card: job.card },
      data: job.data ?? null,
      role: 'val',
      dir: dataFolder(dir, assetsDir(job.assets)),
      strict: job.strict,
    };
    const ranks = await withExecutor(job.queue, log, (exec) => exec.ranks({ model, set, place }, { batchSize: job.batchSize }));
    const n = ranks.length;
    return {
      model: model.name,
      folder: dir,
      images: n,
      top1: ranks.filter((r) => r === 0).length / n,
      top5: ranks.filter((r) => r < 5).length / n,
    };
  });
}
