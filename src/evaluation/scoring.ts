import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import type { DecodedBatch, ImageSource } from '../data/source.js';
import { argmaxRows, logitsOfImages } from '../classifier/compute.js';

/** Images per forward pass when the caller names no number. */
export const DEFAULT_BATCH = 32;

/**
 * Images per forward pass: the number asked for, else DEFAULT_BATCH or, when more, what the runtime
 * needs to give every worker full runs (a small model on ONNX Runtime: the Fashion-MNIST CNN scored
 * about 50% more images per second in batches of 128 than of 32); never more than the model's
 * measured limit.
 */
export function scoringBatch(model: Classifier, requested?: number): number {
  const size = requested ?? Math.max(DEFAULT_BATCH, model.runtime.forwardBatch ?? 0);
  return Math.min(size, model.maxBatch?.forward ?? size);
}

/**
 * Runs every image of `set` under each perturbation of `vs` (null: the clean images) in ONE pass over
 * the set: each batch is read (or decoded) once, and `use` gets its logits under all of them. Two forward
 * passes are kept in flight (one running, the next handed over), so the runtime's workers never wait
 * for the main thread, and a streamed set decodes ahead meanwhile.
 */
export async function forEachBatch(
  model: Classifier,
  set: ImageSource,
  vs: (tf.Tensor3D | Float32Array | null)[],
  use: (batch: DecodedBatch, logits: Float32Array[]) => void,
  batchSize?: number,
  onBatch?: (done: number) => void,
): Promise<void> {
  const data = vs.map((v) => (v === null || v instanceof Float32Array ? v : (v.dataSync() as Float32Array)));
  const size = scoringBatch(model, batchSize);
  const window: { logits: Promise<Float32Array>; slot: Float32Array[]; k: number; batch: DecodedBatch }[] = [];
  const settleOldest = async () => {
    const t = window.shift()!;
    t.slot[t.k] = await t.logits;
    if (t.k === data.length - 1) {
      use(t.batch, t.slot);
      onBatch?.(t.batch.start + t.batch.items.length);
    }
  };
  for await (const batch of set.batches(size)) {
    const slot: Float32Array[] = new Array(data.length);
    for (let k = 0; k < data.length; k++) {
      const logits = logitsOfImages(model, batch.pixels, batch.items.length, data[k]);
      logits.catch(() => {}); // awaited in settleOldest; this only keeps an early failure from going unhandled
      window.push({ logits, slot, k, batch });
      if (window.length > 2) await settleOldest();
    }
  }
  while (window.length) await settleOldest();
}

/** Top-1 labels of every image of `set` under each perturbation of `vs` (null: clean), in one pass. */
export async function predictMany(
  model: Classifier,
  set: ImageSource,
  vs: (tf.Tensor3D | Float32Array | null)[],
  batchSize?: number,
  onBatch?: (done: number) => void,
): Promise<Int32Array[]> {
  const parts: Int32Array[][] = vs.map(() => []);
  await forEachBatch(
    model,
    set,
    vs,
    (_, logits) => logits.forEach((l, k) => parts[k].push(argmaxRows(l, model.numClasses))),
    batchSize,
    onBatch,
  );
  return parts.map(concatLabels);
}

/** Batches of labels joined in order. */
export function concatLabels(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Top-1 labels of every image of `set` (optionally with v added). */
export async function predictSet(
  model: Classifier,
  set: ImageSource,
  v: tf.Tensor3D | null,
  batchSize?: number,
  onBatch?: (done: number) => void,
): Promise<Int32Array> {
  return (await predictMany(model, set, [v], batchSize, onBatch))[0];
}

/** Share of images whose top-1 label changed: the paper's fooling rate (vs the model's own labels). */
export function foolingRate(clean: Int32Array, adv: Int32Array): number {
  if (clean.length === 0) return 0;
  let changed = 0;
  for (let i = 0; i < clean.length; i++) if (clean[i] !== adv[i]) changed++;
  return changed / clean.length;
}

/** A perturbation scored on a set: fooling rate, clean and perturbed accuracy (when labels are known), and every image's clean and perturbed label. */
export interface Evaluation {
  images: number;
  /** Share of images whose label changed when v is added. */
  foolingRate: number;
  /**
   * With ground-truth labels: accuracy clean and perturbed, and the fooling rate among correct images
   * (absent when no image is classified correctly).
   */
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
  // No correctly classified image: the rate among them is undefined, not 0%.
  if (correct) ev.foolingRateOnCorrect = correctFooled / correct;
  return ev;
}

/** The figures of v on a set: clean and perturbed labels in one pass (or the given clean labels). */
export async function evaluatePerturbation(
  model: Classifier,
  set: ImageSource,
  v: tf.Tensor3D,
  opts: { batchSize?: number; cleanPred?: Int32Array } = {},
): Promise<Evaluation> {
  // A missing v scored the clean images against themselves: 0% fooled, silently.
  if (!(v instanceof tf.Tensor) || v.shape.join('x') !== model.inputShape.join('x'))
    throw new TypeError(
      `evaluatePerturbation: v must be a tf.Tensor3D of the model's input shape [${model.inputShape}], got ${v instanceof tf.Tensor ? `[${v.shape}]` : String(v)}`,
    );
  if (opts.cleanPred) return scorePredictions(opts.cleanPred, await predictSet(model, set, v, opts.batchSize), set.labels);
  const [cleanPred, advPred] = await predictMany(model, set, [null, v], opts.batchSize);
  return scorePredictions(cleanPred, advPred, set.labels);
}
