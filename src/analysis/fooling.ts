import * as tf from '@tensorflow/tfjs';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { predictLabels } from '../model/compute.js';

/** clip(x + v, 0, 255): perturbed images always stay valid pixels. */
export function perturb(x: tf.Tensor4D, v: tf.Tensor3D | null): tf.Tensor4D {
  return v ? (tf.clipByValue(tf.add(x, v), 0, 255) as tf.Tensor4D) : x;
}

/** Top-1 labels of every image of `set` (optionally with v added), forward passes in batches. */
export async function predictSet(model: Classifier, set: ImageSet, v: tf.Tensor3D | null, batchSize = 32, onBatch?: (done: number) => void): Promise<Int32Array> {
  const out = new Int32Array(set.size);
  for (const idx of set.batchIndices(Math.min(batchSize, model.maxBatch?.forward ?? batchSize))) {
    const x = tf.tidy(() => perturb(set.batch(idx), v));
    try {
      out.set(await predictLabels(model, x), idx[0]);
    } finally {
      x.dispose();
    }
    onBatch?.(idx[0] + idx.length);
  }
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
