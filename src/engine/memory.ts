import * as tf from '../tf.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * How many images one forward or backward pass may hold, from the model's measured tensor memory.
 * Why: wasm has a 4 GB heap that never shrinks and aborts the process when exceeded; a MobileNet v2
 * at 224 holds ~320 MB of activations per image under a gradient, so a fixed batch of 32 dies.
 */
export interface BatchLimits {
  /** Images per forward pass. */
  forward: number;
  /** Rows (images x candidate classes) per backward pass. */
  gradient: number;
}

/** Live tensor bytes one pass may use (well under wasm's 4 GB ceiling: its heap fragments). */
export const PASS_BUDGET_BYTES = 1.5e9;
const MAX_FORWARD = 64;
const MAX_GRADIENT_ROWS = 32;

function peakAbove(base: number, info: { peakBytes: number; kernels: unknown[] }): number {
  return info.kernels.length ? Math.max(1, info.peakBytes - base) : 1;
}

/**
 * Runs one forward and one input gradient of a single image under tf.profile and scales the batch to
 * the budget. Also proves, at load time, that the model is differentiable (throws otherwise).
 */
export async function measureBatchLimits(logits: (x: tf.Tensor4D) => tf.Tensor2D, inputShape: ImageShape): Promise<BatchLimits> {
  const x = tf.zeros([1, ...inputShape]) as tf.Tensor4D;
  try {
    const base = tf.memory().numBytes;
    // tf.profile returns the same object every call: read each peak before the next profile.
    const forward = peakAbove(base, await tf.profile(() => void tf.tidy(() => void logits(x).dataSync())));
    const gradient = peakAbove(
      base,
      await tf.profile(
        () =>
          void tf.tidy(
            () =>
              void tf
                .grad((t: tf.Tensor) => tf.sum(logits(t as tf.Tensor4D)))(x)
                .dataSync(),
          ),
      ),
    );
    const fit = (bytes: number, cap: number) => Math.max(1, Math.min(cap, Math.floor(PASS_BUDGET_BYTES / bytes)));
    return { forward: fit(forward, MAX_FORWARD), gradient: fit(gradient, MAX_GRADIENT_ROWS) };
  } finally {
    x.dispose();
  }
}
