import * as tf from '../tf.js';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { predictImages } from '../model/compute.js';

/**
 * Top-1 labels of every image of `set` (optionally with v added), in batches straight from its uint8
 * bytes. The next batch is handed over before the current one is awaited, so the runtime's workers
 * never wait for the main thread.
 */
export async function predictSet(model: Classifier, set: ImageSet, v: tf.Tensor3D | null, batchSize = 32, onBatch?: (done: number) => void): Promise<Int32Array> {
  const out = new Int32Array(set.size);
  const vData = v ? (v.dataSync() as Float32Array) : null;
  const size = Math.min(batchSize, model.maxBatch?.forward ?? batchSize);
  type InFlight = { start: number; n: number; labels: Promise<Int32Array> };
  const settle = async (b: InFlight) => {
    out.set(await b.labels, b.start);
    onBatch?.(b.start + b.n);
  };
  let previous: InFlight | undefined;
  for (let start = 0; start < set.size; start += size) {
    const n = Math.min(size, set.size - start);
    const next: InFlight = { start, n, labels: predictImages(model, set.pixelsOf(start, n), n, vData) };
    next.labels.catch(() => {}); // awaited in settle; this only keeps an early failure from going unhandled
    if (previous) await settle(previous);
    previous = next;
  }
  if (previous) await settle(previous);
  return out;
}

/** Share of images whose top-1 label changed: the paper's fooling rate (vs the model's own labels). */
export function foolingRate(clean: Int32Array, adv: Int32Array): number {
  if (clean.length === 0) return 0;
  let changed = 0;
  for (let i = 0; i < clean.length; i++) if (clean[i] !== adv[i]) changed++;
  return changed / clean.length;
}

export interface Evaluation {
  images: number;
  /** Share of images whose label changed when v is added. */
  foolingRate: number;
  /** With ground-truth labels: accuracy clean and perturbed, and the fooling rate among correct images. */
  cleanAccuracy?: number;
  perturbedAccuracy?: number;
  foolingRateOnCorrect?: number;
  cleanPred: Int32Array;
  advPred: Int32Array;
}

/** All the figures of one perturbation on one image set. */
export function scorePredictions(cleanPred: Int32Array, advPred: Int32Array, labels?: Int32Array): Evaluation {
  const ev: Evaluation = { images: cleanPred.length, foolingRate: foolingRate(cleanPred, advPred), cleanPred, advPred };
  if (!labels) return ev;
  let correct = 0;
  let advCorrect = 0;
  let correctFooled = 0;
  for (let i = 0; i < labels.length; i++) {
    if (cleanPred[i] === labels[i]) {
      correct++;
      if (advPred[i] !== cleanPred[i]) correctFooled++;
    }
    if (advPred[i] === labels[i]) advCorrect++;
  }
  ev.cleanAccuracy = correct / labels.length;
  ev.perturbedAccuracy = advCorrect / labels.length;
  ev.foolingRateOnCorrect = correct ? correctFooled / correct : 0;
  return ev;
}

export async function evaluatePerturbation(model: Classifier, set: ImageSet, v: tf.Tensor3D, opts: { batchSize?: number; cleanPred?: Int32Array } = {}): Promise<Evaluation> {
  const cleanPred = opts.cleanPred ?? (await predictSet(model, set, null, opts.batchSize));
  const advPred = await predictSet(model, set, v, opts.batchSize);
  return scorePredictions(cleanPred, advPred, set.labels);
}
