import type { Classifier } from '../classifier/classifier.js';
import type { ImageItem, ImageSource } from '../data/source.js';
import { labelsOf } from '../data/source.js';
import { argmaxRows } from '../classifier/compute.js';
import { randomPerturbation } from '../math/noise.js';
import type { Norm } from '../math/lp.js';
import { concatLabels, forEachBatch, foolingRate, predictMany, scorePredictions, type Evaluation } from './scoring.js';
import { PerImage, type ImageFacts } from './perImage.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * v's figures on a set beside random noise, computed in parts and joined in order. One part is the
 * local run; a distributed run (src/scale) scores ranges of the set on workers and joins their parts
 * in range order, which gives exactly the local figures: each part is plain data (JSON-safe), and
 * the ranges start on batch boundaries, so every forward pass sees the same images as locally.
 */

export interface Baseline {
  norm: Norm;
  radius: number;
  mean: number;
  min: number;
  max: number;
  draws: number;
}

/** The seeded noise draws of a random baseline: `draws` perturbations of norm exactly `xi`. */
export function noiseDraws(shape: ImageShape, norm: Norm, xi: number, draws: number): Float32Array[] {
  return Array.from({ length: draws }, (_, d) => {
    const r = randomPerturbation(shape, norm, xi, 1000 + d);
    const data = r.dataSync() as Float32Array;
    r.dispose();
    return data;
  });
}

/** Every noise draw of a scoring, radius by radius. */
export function allDraws(shape: ImageShape, o: Pick<NoiseScoreOptions, 'radii' | 'draws'>): Float32Array[] {
  return o.radii.flatMap((r) => noiseDraws(shape, r.norm, r.xi, o.draws));
}

export function baselineOf(norm: Norm, xi: number, clean: Int32Array, preds: Int32Array[]): Baseline {
  const rates = preds.map((p) => foolingRate(clean, p));
  return {
    norm,
    radius: xi,
    mean: rates.reduce((a, b) => a + b, 0) / rates.length,
    min: Math.min(...rates),
    max: Math.max(...rates),
    draws: rates.length,
  };
}

/** What scoring a run of images gives: per image, in order, for the images that decoded. */
export interface ScorePart {
  /** Positions (in the scored list) of the images that decoded. */
  kept: number[];
  /** Top-1 labels: clean, with each v, then with each noise draw (radius by radius). */
  labels: number[][];
  /** Confidences and margins with the first v (empty without one). */
  facts: ImageFacts[];
  /** With `ranks`: per image, how many classes score strictly higher than its true label, clean (-1: no label). */
  ranks?: number[];
}

export interface NoiseScoreOptions {
  radii: { norm: Norm; xi: number }[];
  draws: number;
  /** The draws of `radii`, when already made (a worker keeps them across the shards of one scoring). */
  noise?: Float32Array[];
  /** Also the rank of each image's true label among the clean logits (top-1 / top-5 accuracy). */
  ranks?: boolean;
  batchSize?: number;
  onBatch?: (done: number) => void;
}

/** Scores `set` (a whole set, or one range of it) clean, with each of `vs` and with the noise draws, in ONE pass over its images. */
export async function scorePart(
  model: Classifier,
  set: ImageSource & { listed?: ImageItem[] },
  vs: Float32Array[],
  opts: NoiseScoreOptions,
): Promise<ScorePart> {
  const noise = opts.noise ?? allDraws(model.inputShape, opts);
  const k = model.numClasses;
  const perImage = new PerImage();
  const kept: ImageItem[] = [];
  const parts: Int32Array[][] = [];
  const ranks: number[] = [];
  await forEachBatch(
    model,
    set,
    [null, ...vs, ...noise],
    (batch, logits) => {
      kept.push(...batch.items);
      if (opts.ranks)
        batch.items.forEach((item, r) =>
          ranks.push(item.label === undefined ? -1 : rankOf(logits[0].subarray(r * k, (r + 1) * k), item.label)),
        );
      if (vs.length) perImage.add(batch.items, logits[0], logits[1], k);
      logits.forEach((l, j) => (parts[j] ??= []).push(argmaxRows(l, k)));
    },
    opts.batchSize,
    opts.onBatch,
  );
  const listed = set.listed ?? set.items;
  const at = new Map(listed.map((item, i) => [item, i]));
  return {
    kept: kept.map((item) => at.get(item)!),
    labels: parts.map((p) => Array.from(concatLabels(p))),
    facts: [...perImage.facts()],
    ...(opts.ranks ? { ranks } : {}),
  };
}

/** How many classes score strictly higher than class `label` in one row of logits (0: top-1). */
function rankOf(row: Float32Array, label: number): number {
  const truth = row[label];
  return row.reduce((n, v) => n + (v > truth ? 1 : 0), 0);
}

/** The parts' top-1 labels joined in order: clean, then each v, then each noise draw. */
export function joinLabels(parts: ScorePart[]): Int32Array[] {
  const columns: number[][] = [];
  for (const p of parts) p.labels.forEach((l, j) => (columns[j] ??= []).push(...l));
  return columns.map((c) => Int32Array.from(c));
}

/** The figures of the parts of a list of images, joined in order: `parts[i]` scored `ranges[i]` of `listed`. */
export function joinParts(
  listed: ImageItem[],
  ranges: { start: number }[],
  parts: ScorePart[],
  opts: Pick<NoiseScoreOptions, 'radii' | 'draws'>,
): { ev: Evaluation; baselines: Baseline[]; perImage: PerImage; items: ImageItem[] } {
  const perImage = new PerImage();
  const items: ImageItem[] = [];
  parts.forEach((p, s) => {
    const its = p.kept.map((i) => listed[ranges[s].start + i]);
    items.push(...its);
    perImage.addFacts(its, p.facts);
  });
  const [clean, adv, ...rest] = joinLabels(parts);
  const baselines = opts.radii.map((r, j) => baselineOf(r.norm, r.xi, clean, rest.slice(j * opts.draws, (j + 1) * opts.draws)));
  return { ev: scorePredictions(clean, adv, labelsOf(items)), baselines, perImage, items };
}

/** Random-noise baseline: fooling rates of `draws` seeded random perturbations of norm `xi` (one pass over the set). */
export async function randomBaseline(
  model: Classifier,
  set: ImageSource,
  norm: Norm,
  xi: number,
  draws: number,
  cleanPred: Int32Array,
): Promise<Baseline> {
  return baselineOf(norm, xi, cleanPred, await predictMany(model, set, noiseDraws(model.inputShape, norm, xi, draws)));
}
