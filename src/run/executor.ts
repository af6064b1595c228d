import type { Classifier } from '../classifier/classifier.js';
import type { CardOverrides } from '../import/load.js';
import type { ImageSource } from '../data/source.js';
import type { ImageSet } from '../data/imageSet.js';
import type { ImageItem } from '../data/source.js';
import { craft, type AttackSettings, type Method } from '../attacks/methods.js';
import type { ShardGradients, SgdLossOptions } from '../attacks/sgd.js';
import { predictMany, type Evaluation } from '../evaluation/scoring.js';
import { joinParts, scorePart, type Baseline, type NoiseScoreOptions } from '../evaluation/noiseScore.js';
import type { PerImage } from '../evaluation/perImage.js';

/**
 * Where a job's heavy work runs: here (`localExecutor`), or in shards on `uap worker`s through a queue
 * (src/scale: `queueExecutor`). Jobs take one and call it without asking which: both give the same
 * labels, figures and perturbations (the queue's shards start on batch boundaries and join in order).
 */

/** How a worker names a model to load it: a spec (bundled name or file) and card overrides. */
export interface WorkerModel {
  spec: string;
  card?: CardOverrides;
}

/**
 * Where an image set is for a worker, which resolves it on its own disk: the model and the set as the
 * user named them (data null: the model's default set of `role`), and the set's folder here (shards name
 * their images relative to it). Work here ignores it.
 */
export interface SetPlace {
  model: WorkerModel;
  data: string | null;
  role: 'data' | 'val';
  dir: string;
  /** Stop on the first file that does not decode (as here). */
  strict?: boolean;
}

/** One image set of one model, and where it is for a worker. */
export interface OnSet<S extends ImageSource = ImageSource> {
  model: Classifier;
  set: S;
  place?: SetPlace;
}

/** Told how many images of the set are done. */
export interface Progressing {
  batchSize?: number;
  onBatch?: (done: number) => void;
}

/** v's figures on a set, beside random noise at each radius: what `uap evaluate` and `uap compute` report. */
export interface Scored {
  ev: Evaluation;
  baselines: Baseline[];
  perImage: PerImage;
}

/** One whole crafting run: v, and its fooling rate on its X with the passes and seconds it took. */
export interface CraftedRun {
  v: Float32Array;
  foolingRate: number;
  passes: number;
  seconds: number;
}

/** Crafting runs to make: each on its own X with its own settings. */
export type CraftRuns = { X: ImageSet; options: AttackSettings }[];

export interface Executor {
  /** Where the work runs, in words for the log ('here', "the queue's workers"). */
  readonly where: string;
  /** Top-1 labels of the set: clean, then with each of `vs`. */
  labels(on: OnSet, vs: Float32Array[], o?: Progressing): Promise<Int32Array[]>;
  /** v's figures on the set beside noise, in one pass over its images. */
  score(on: OnSet, v: Float32Array, o: NoiseScoreOptions): Promise<Scored>;
  /** Each image's rank of its true label among its clean logits (top-1: 0). */
  ranks(on: OnSet, o?: Progressing): Promise<number[]>;
  /**
   * Whole crafting runs of `method` on the model, v in the order of `runs`; `onRun` hears each as it
   * is made (here one by one; on a queue, all made at once, then told in order).
   */
  craft(
    on: Omit<OnSet, 'set'>,
    runs: CraftRuns,
    method: Method,
    o?: { signal?: AbortSignal; onRun?: (i: number, r: CraftedRun) => void },
  ): Promise<CraftedRun[]>;
  /** SGD-UAP's step gradients in shards on this executor, or undefined: the method sums its shards itself. */
  gradients(on: OnSet<ImageSet>, loss: SgdLossOptions): Promise<ShardGradients | undefined>;
  /** Ends what the executor holds open (a queue's connection). */
  close(): Promise<void>;
}

const listedOf = (set: ImageSource): ImageItem[] => ('listed' in set ? (set as { listed: ImageItem[] }).listed : set.items);

/** The work of a job, here: the forward and gradient passes of this process. */
export const localExecutor: Executor = {
  where: 'here',
  labels: ({ model, set }, vs, o = {}) => predictMany(model, set, [null, ...vs], o.batchSize, o.onBatch),
  async score({ model, set }, v, o) {
    const part = await scorePart(model, set, [v], o);
    return joinParts(listedOf(set), [{ start: 0 }], [part], o);
  },
  async ranks({ model, set }, o = {}) {
    return (await scorePart(model, set, [], { ...o, radii: [], draws: 0, ranks: true })).ranks!;
  },
  async craft({ model }, runs, method, o = {}) {
    const made: CraftedRun[] = [];
    for (const [i, { X, options }] of runs.entries()) {
      const res = await craft(model, X, method, options, { signal: o.signal });
      const run = { v: Float32Array.from(res.v.dataSync()), foolingRate: res.foolingRate, passes: res.passes, seconds: res.seconds };
      res.v.dispose();
      made.push(run);
      o.onRun?.(i, run);
    }
    return made;
  },
  gradients: () => Promise.resolve(undefined),
  close: () => Promise.resolve(),
};
