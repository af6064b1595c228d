import type { ModelCard } from './card.js';
import * as tf from '../tf.js';
import type { BatchLimits } from '../engine/memory.js';
import type { Runtime } from '../engine/runtime.js';
import { UsageError } from '../errors.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * What the forward and gradient functions of compute.ts need: a differentiable map of pixel-space
 * images to `numClasses` values (a classifier's logits, or a feature model's activations).
 */
export interface Differentiable {
  readonly inputShape: ImageShape;
  readonly numClasses: number;
  /** The TF.js graph of the map (what a TF.js runtime runs; what the self-check and training differentiate). */
  logits(x: tf.Tensor4D): tf.Tensor2D;
  /** Where its batched forward passes and input gradients run: the one head every attack calls (compute.ts). */
  readonly runtime: Runtime;
}

/** Inner-layer activations of a network as one differentiable output (data-free and feature-layer attacks). */
export interface FeatureModel extends Differentiable {
  /** The layers, in the order of their values in each row (numClasses = the sum of their sizes). */
  readonly layers: { name: string; size: number }[];
  dispose(): void;
}

/** An image classifier seen by the attacks: pixel-space input, logits in the data's label space. */
export interface Classifier extends Differentiable {
  readonly name: string;
  /** [height, width, channels] of the images it takes. */
  readonly inputShape: ImageShape;
  readonly numClasses: number;
  readonly labels?: string[];
  readonly labelSpace: 'imagenet' | 'own';
  /** How pixels map to the model's input (its card's); perturbations in normalised units need it. */
  readonly preprocess?: ModelCard['preprocess'];
  /** x: [N,H,W,C] float32 in pixel space [0,255]; returns [N, numClasses] pre-softmax logits (TF.js). */
  logits(x: tf.Tensor4D): tf.Tensor2D;
  /** Where batched forward passes and input gradients run (ONNX Runtime or TF.js; see compute.ts). */
  readonly runtime: Runtime;
  /** Where it runs, in words (printed by the CLI). */
  readonly runsOn?: string;
  /** Largest batches that fit in memory (measured at load; absent = no limit known). */
  readonly maxBatch?: BatchLimits;
  /** The file the model was read from (provenance: its hash goes into a run's config.json). */
  readonly file?: string;
  /** Where the model runs on an export kept from an earlier load of the same file: the cache entry's folder (engine/onnx/exportCache.ts). */
  readonly cachedExport?: string;
  /**
   * The activations of inner layers (default: every convolution's output, after its activation), on the
   * classifier's runtime. Absent for models the engine only runs as a whole (TF.js GraphModels).
   */
  features?(layers?: string[]): Promise<FeatureModel>;
  dispose(): void;
}

/** The label name of class i, or "#i" when the model has no names. */
export function labelName(model: Classifier, i: number): string {
  return model.labels?.[i] ?? `#${i}`;
}

/** A `target` (or one of `classes`, `field`) given as a class index or a label name (exact, or the first comma-separated name). */
export function resolveTarget(target: number | string | undefined, model: Classifier, field = 'target'): number | undefined {
  if (target === undefined) return undefined;
  const asNumber = typeof target === 'number' ? target : /^\d+$/.test(target.trim()) ? Number(target) : undefined;
  if (asNumber !== undefined) {
    if (asNumber >= model.numClasses)
      throw new UsageError(`{${field}} ${target}: the model has ${model.numClasses} classes (0..${model.numClasses - 1})`);
    return asNumber;
  }
  const want = String(target).trim().toLowerCase();
  const names = model.labels ?? [];
  const i = names.findIndex((n) => n.toLowerCase() === want || n.toLowerCase().split(',')[0].trim() === want);
  if (i < 0)
    throw new UsageError(
      `{${field}} ${target}: no class of model ${model.name} has that name (give an index 0..${model.numClasses - 1} or a label name)`,
    );
  return i;
}
