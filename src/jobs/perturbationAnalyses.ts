import { existsSync } from 'node:fs';
import { readRunConfig } from '../run/config.js';
import { join } from 'node:path';
import type * as tf from '../tf.js';
import type { Backend } from '../engine/backend.js';
import { UsageError } from '../errors.js';
import { namedLog, type Log } from '../log.js';
import type { JobControl } from './control.js';
import { assetsDir } from '../paths.js';
import type { Norm } from '../math/lp.js';
import { labelName, type Classifier } from '../classifier/classifier.js';
import { loadModel, type CardOverrides } from '../import/load.js';
import type { StreamedImages } from '../data/stream.js';
import { dataFolder, defaultData, openSet } from '../data/sets.js';
import { loadPerturbation, type PerturbationFormat } from '../perturbation/file.js';
import { writeJson, writeText } from '../run/write.js';
import { transferSource } from '../analysis/transfer.js';
import { foolingGraph, graphToDot, dotToSvg, type FoolingGraph } from '../analysis/graph.js';
import { normSweep, sweepSpec, type SweepPoint, type NormSweep } from '../analysis/baseline.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import type { Executor, SetPlace } from '../run/executor.js';

/**
 * The analyses of one perturbation (`uap graph`, `uap baseline`) as typed jobs: what to analyse, on
 * which images, where the files go. The CLI maps its flags to these options and prints the result;
 * `uap demo` and `uap reproduce` call the same jobs with options of their own.
 */
export interface PerturbationAnalysisJob {
  /** Where the model runs. */
  backend: Backend;
  /** A `uap compute` run directory: its model, card fields, perturbation, validation images and (default) output folder. */
  run?: string;
  /** Without `run`: the model and the perturbation file (.npy / .npz) read in `format`. */
  model?: string;
  perturbation?: string;
  format?: PerturbationFormat;
  /** Card fields that complete or override the model's (and the run's). */
  card?: CardOverrides;
  assets?: string;
  /** Images (default: the run's own validation images, else the model's validation set). */
  data?: string;
  limit?: number;
  /** Output folder (default: the run directory, else runs/analysis). */
  out?: string;
  /** Score on `uap worker`s through this queue, in shards: the same labels. */
  queue?: QueueOption;
}

/** The validation images a `uap compute` run scored (its config.json), for its analyses to score the same. */
interface RunValidation {
  data: string;
  labels?: string;
  limit?: number;
  sample?: { count: number; seed: number };
}

/** The norm a run folder's config.json names (none when it is unreadable or names another). */
function runNorm(run: string): Norm | undefined {
  return readRunConfig(run)?.norm;
}

function runValidation(run: string): RunValidation | undefined {
  const c = readRunConfig(run);
  if (c?.val === undefined) return undefined;
  return {
    data: c.val,
    labels: c.valLabels,
    limit: c.valLimit,
    sample: c.valSample === undefined ? undefined : { count: c.valSample, seed: c.seed ?? 0 },
  };
}

/** The model and perturbation a job names: its run, or its model and perturbation file. */
function target(
  job: PerturbationAnalysisJob,
  what: string,
): { modelName: string; file: string; format: PerturbationFormat; out?: string; card?: CardOverrides; val?: RunValidation } {
  if (job.run && job.perturbation)
    throw new UsageError(`{run} ${job.run} and {perturbation} ${job.perturbation}: the run analyses its own perturbation; give one`);
  if (job.run) {
    const src = transferSource(job.run);
    if (!src.craftedOn) throw new UsageError(`{run} ${job.run}: config.json does not name the model`);
    return { modelName: src.craftedOn, file: src.file, format: src.format, out: job.run, card: src.card, val: runValidation(job.run) };
  }
  if (!job.perturbation || !job.model) throw new UsageError(`${what}: give {run} DIR, or {model} with {perturbation} FILE`);
  if (!existsSync(job.perturbation)) throw new UsageError(`{perturbation} ${job.perturbation}: file not found`);
  return { modelName: job.model, file: job.perturbation, format: job.format ?? {} };
}

/** What an analysis of one perturbation gets: the model, its images, v, their folder, and the job's executor with the images' place. */
interface AnalysisInputs {
  model: Classifier;
  set: StreamedImages;
  v: tf.Tensor3D;
  /** The images' folder as named. */
  dir: string;
  /** The perturbation file. */
  file: string;
  /** Where the files go. */
  out: string;
  exec: Executor;
  place: SetPlace;
}

/** Loads the model, its image set and the perturbation (fitted to the model), runs `use`, cleans up. */
async function withTarget<T>(job: PerturbationAnalysisJob, what: string, log: Log, use: (a: AnalysisInputs) => Promise<T>): Promise<T> {
  const t = target(job, what);
  const assets = assetsDir(job.assets);
  // The run's own card fields (given as flags to uap compute), completed or overridden by this job's.
  const card = { ...t.card, ...job.card };
  const model = await loadModel(t.modelName, { assets, card, backend: job.backend }, log);
  try {
    // Default: the images the run was scored on (its val, valLimit, valSample), else the model's validation set.
    const own = job.data === undefined && job.limit === undefined ? t.val : undefined;
    const dir = job.data ?? own?.data ?? defaultData(model, assets).val;
    const set = openSet(model, dir, {
      labels: own?.labels,
      limit: job.limit ?? own?.limit,
      sample: own?.sample,
      assets,
      log,
      what: own ? "the run's validation set" : 'images',
    });
    const v = loadPerturbation(t.file, model, log, t.format);
    try {
      const place: SetPlace = { model: { spec: t.modelName, card }, data: dir, role: 'val', dir: dataFolder(dir, assets) };
      const out = job.out ?? t.out ?? 'runs/analysis';
      return await withExecutor(job.queue, log, (exec) => use({ model, set, v, dir, file: t.file, out, exec, place }));
    } finally {
      v.dispose();
    }
  } finally {
    model.dispose();
  }
}

/** The fooling graph of a job's perturbation, written to its folder (graph.json, graph.dot, graph.svg). */
export interface GraphResult {
  graph: FoolingGraph;
  files: string[];
}

/** `uap graph`: where the fooled images of each label go; dominant labels; components. */
export async function graphJob(job: PerturbationAnalysisJob, ctl: JobControl = {}): Promise<GraphResult> {
  const log = namedLog(ctl.log);
  return withTarget(job, 'graph', log, async ({ model, set, v, dir, file, out, exec, place }) => {
    const [clean, adv] = await exec.labels({ model, set, place }, [v.dataSync() as Float32Array]);
    const name = (i: number) => labelName(model, i);
    const graph = foolingGraph(clean, adv, name);
    const dot = graphToDot(graph, name);
    const files = ['graph.json', 'graph.dot', 'graph.svg'].map((f) => join(out, f));
    writeJson(files[0], { model: model.name, perturbation: file, data: dir, ...graph });
    writeText(files[1], dot);
    writeText(files[2], await dotToSvg(dot));
    return { graph, files };
  });
}

/** Options of `uap baseline` besides the perturbation's. */
export interface BaselineJob extends PerturbationAnalysisJob {
  /** Norm of the sweep (default: the run's, else Linf). */
  norm?: Norm;
  /** Radii as multiples of ||v|| (default: DEFAULT_FACTORS). */
  factors?: number[];
  /** Random draws per radius. */
  draws: number;
  /** Also each image's own DeepFool perturbation at each radius, and their sum. */
  deepfool?: boolean;
  /** Told each point of the sweep as it is scored. */
  onPoint?: (p: SweepPoint) => void;
}

/** `uap baseline`: fooling rate against norm, the perturbation scaled beside random noise of the same norm (baseline.json, baseline.svg). */
export async function baselineJob(job: BaselineJob, ctl: JobControl = {}): Promise<{ sweep: NormSweep; files: string[] }> {
  const log = namedLog(ctl.log);
  if (job.factors?.some((f) => !Number.isFinite(f) || f < 0))
    throw new UsageError(`{factors} ${job.factors.join(',')}: expected numbers >= 0, e.g. 0,0.5,1,2`);
  let p = job.norm;
  if (p === undefined && job.run) p = runNorm(job.run);
  return withTarget(job, 'baseline', log, async ({ model, set, v, dir, file, out, exec, place }) => {
    const sweep = await normSweep(model, set, v, p ?? 'inf', {
      factors: job.factors,
      draws: job.draws,
      deepfool: job.deepfool,
      exec,
      place,
      onPoint: job.onPoint,
    });
    const files = ['baseline.json', 'baseline.svg'].map((f) => join(out, f));
    writeJson(files[0], { model: model.name, perturbation: file, data: dir, ...sweep });
    writeText(files[1], await vegaLiteToSvg(sweepSpec(sweep, `${model.name}: universal perturbation vs random noise`)));
    return { sweep, files };
  });
}
