import { join } from 'node:path';
import type { Classifier } from '../classifier/classifier.js';
import { resolveTarget } from '../classifier/classifier.js';
import { loadModel, type ModelSpec } from '../import/load.js';
import type { ImageSet } from '../data/imageSet.js';
import type { StreamedImages } from '../data/stream.js';
import { checkDataSpec, dataFolder, defaultData, loadSet, openSet, setOptionsOf, type DataSpec } from '../data/sets.js';
import { methodOptions, type AttackSettings, type Method } from '../attacks/methods.js';
import { sizeSweep, sizeSpec, type SizePoint, type SizeRun, type SweepControl } from '../analysis/sizes.js';
import { normalsAnalysis, normalsSpec, type NormalsResult } from '../analysis/normals.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import type { Executor, SetPlace } from '../run/executor.js';
import { defaultXi } from '../math/lp.js';
import { namedLog, type Log } from '../log.js';
import { writeJson, writeText } from '../run/write.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { assetsDir } from '../paths.js';
import { UsageError } from '../errors.js';
import type { JobControl } from './control.js';

/**
 * The analyses of a model that work on images X and score on validation images (`uap sweep-size`, `uap
 * normals`) as typed jobs: the model, the two sets, where the files go.
 */
export interface ModelAnalysisJob extends ModelSpec, DataSpec {
  /** Seed of the samples of X and validation (`sample`, `valSample`). */
  seed?: number;
  /** Folder for the JSON and SVG. */
  out: string;
  /** Work on `uap worker`s through this queue, in shards: the same figures. */
  queue?: QueueOption;
}

/**
 * Counts asked for (sizes of X, dimensions) beyond what the data holds: refused when none fits (the
 * result would be empty), else the larger ones are left out with a warning naming them.
 */
function checkCounts(option: 'sizes' | 'dims', asked: number[] | undefined, most: number, what: string, log: Log): void {
  const over = asked?.filter((n) => n > most) ?? [];
  if (!asked || over.length === 0) return;
  if (over.length === asked.length) throw new UsageError(`{${option}} ${asked.join(',')}: all exceed ${what}`);
  log.warn(`{${option}} ${asked.join(',')}: ${over.join(', ')} exceed ${what} and are left out`);
}

/** The model, X (at most `xLimit` images unless the job says) and the validation images, where each is for a worker, and the job's executor. */
interface Sets {
  model: Classifier;
  X: ImageSet;
  V: StreamedImages;
  places: { x: SetPlace; v: SetPlace };
  exec: Executor;
}

async function withModelAndSets<T>(
  job: ModelAnalysisJob,
  what: string,
  xLimit: number | undefined,
  log: Log,
  use: (s: Sets) => Promise<T>,
): Promise<T> {
  if (job.val === 'none') throw new UsageError(`{val} none: ${what} needs validation images`);
  checkDataSpec(job);
  const assets = assetsDir(job.assets);
  const model = await loadModel(job.model, { assets, card: job.card, backend: job.backend }, log);
  try {
    const defaults = defaultData(model, assets);
    const seed = job.seed ?? 0;
    const [data, val] = [job.data ?? defaults.data, job.val ?? defaults.val];
    const X = await loadSet(model, data, {
      ...setOptionsOf(job, 'data', seed, { assets, log, what: 'images X' }),
      limit: job.limit ?? (job.sample === undefined ? xLimit : undefined),
    });
    const V = openSet(model, val, setOptionsOf(job, 'val', seed, { assets, log, what: 'validation set' }));
    const place = (role: 'data' | 'val'): SetPlace => ({
      model: { spec: job.model, card: job.card },
      data: (role === 'data' ? job.data : job.val) ?? null,
      role,
      dir: dataFolder(role === 'data' ? data : val, assets),
      strict: job.strict,
    });
    const places = { x: place('data'), v: place('val') };
    return await withExecutor(job.queue, log, (exec) => use({ model, X, V, places, exec }));
  } finally {
    model.dispose();
  }
}

/** Options of `uap sweep-size`: one method and its settings, crafted on nested seeded subsets of X. */
export interface SweepSizeJob extends ModelAnalysisJob {
  method?: Method;
  options: Partial<AttackSettings>;
  /** Targeted: a class index or label name. */
  target?: number | string;
  /** Sizes of X (default DEFAULT_SIZES up to the images there are, and all of them). */
  sizes?: number[];
  /** Repeat the sweep with this many seeds (seed, seed + 1, ...): each point then has the spread over them (default 1). */
  seeds?: number;
  /** Told each crafting run (a size and a seed) as it is made, before the validation images score it. */
  onCrafted?: SweepControl['onCrafted'];
  /** Told each crafting run as it is scored. */
  onRun?: (r: SizeRun) => void;
}

/** `uap sweep-size`: validation fooling rate against |X| (sweep-size.json, sweep-size.svg). */
export async function sweepSizeJob(
  job: SweepSizeJob,
  ctl: JobControl = {},
): Promise<{ points: SizePoint[]; validationImages: number; files: string[] }> {
  const log = namedLog(ctl.log);
  if (job.seeds !== undefined && (!Number.isInteger(job.seeds) || job.seeds < 1 || job.seeds > 100))
    throw new UsageError(`{seeds} ${job.seeds}: expected an integer from 1 to 100`);
  if (job.sizes?.some((n) => !Number.isInteger(n) || n < 1))
    throw new UsageError(`{sizes} ${job.sizes.join(',')}: expected integers >= 1, e.g. 50,100,500`);
  return withModelAndSets(
    { ...job, seed: job.seed ?? job.options.seed },
    'the size sweep',
    undefined,
    log,
    async ({ model, X, V, places, exec }) => {
      checkCounts('sizes', job.sizes, X.size, `the ${X.size} images of X`, log);
      const method = job.method ?? 'algorithm1';
      const options = methodOptions(method, model, job.options, resolveTarget(job.target, model));
      const points = await sizeSweep(model, X, V, method, options, {
        sizes: job.sizes,
        seed: options.seed,
        seeds: job.seeds,
        exec,
        places,
        onCrafted: job.onCrafted,
        onRun: job.onRun,
      });
      const files = ['sweep-size.json', 'sweep-size.svg'].map((f) => join(job.out, f));
      writeJson(files[0], { model: model.name, method, options, seeds: job.seeds ?? 1, validationImages: V.size, points });
      writeText(files[1], await vegaLiteToSvg(sizeSpec(points, `${model.name}: fooling rate against |X| (${method})`)));
      return { points, validationImages: V.size, files };
    },
  );
}

/** Options of `uap normals`. */
export interface NormalsJob extends ModelAnalysisJob {
  /** L2 norm of the random vectors, in pixels (default: 2000 at 224x224x3, scaled by sqrt(pixels)). */
  xi?: number;
  /** Subspace dimensions d (default 1,10,50,100,200, up to the rank). */
  dims?: number[];
  /** Random vectors per d. */
  draws: number;
  /** Told how many images of X have their DeepFool normal. */
  onProgress?: (done: number, total: number) => void;
}

/** `uap normals`: singular values of X's DeepFool normals, and fooling by random vectors of their top-d subspaces (normals.json, normals.svg). X defaults to 200 images. */
export async function normalsJob(
  job: NormalsJob,
  ctl: JobControl = {},
): Promise<{ normals: NormalsResult; xi: number; validationImages: number; files: string[] }> {
  const log = namedLog(ctl.log);
  if (job.dims?.some((n) => !Number.isInteger(n) || n < 1))
    throw new UsageError(`{dims} ${job.dims.join(',')}: expected integers >= 1, e.g. 1,10,50`);
  return withModelAndSets(job, 'the subspace fooling rates', 200, log, async ({ model, X, V, places, exec }) => {
    checkCounts('dims', job.dims, X.size, `the ${X.size} normals that ${X.size} images of X give`, log);
    const xi = job.xi ?? defaultXi(2, model.inputShape);
    // The DeepFool normals of X are found here; the executor scores the random vectors.
    const normals = await normalsAnalysis(model, X, V, {
      xi,
      dims: job.dims,
      draws: job.draws,
      exec,
      place: places.v,
      warn: (m) => log.warn(m),
      onProgress: job.onProgress && ((done) => job.onProgress!(done, X.size)),
    });
    const files = ['normals.json', 'normals.svg'].map((f) => join(job.out, f));
    writeJson(files[0], { model: model.name, ...normals });
    writeText(files[1], await vegaLiteToSvg(normalsSpec(normals, `${model.name}: singular values of ${normals.normals} DeepFool normals`)));
    return { normals, xi, validationImages: V.size, files };
  });
}
