import * as tf from '../tf.js';
import type { Rng } from '../math/random.js';
import { takeRows } from '../math/rows.js';

/**
 * How training images are perturbed in the defence (the paper's fine-tuning, section 5): each image,
 * with probability `probability`, gets one member of the pool of universal perturbations, chosen
 * uniformly, times a magnitude drawn uniformly from `scale` (so the network sees perturbations both
 * weaker and stronger than the attack's xi).
 */
export interface SamplingOptions {
  probability: number;
  scale: [number, number];
}

export const SAMPLING_DEFAULTS: SamplingOptions = { probability: 0.5, scale: [0.5, 1.5] };

/** What one image received: nothing, or pool member `member` times `scale`. */
export type Draw = { member: number; scale: number } | null;

/** The draws for a batch of n images, in order; the same rng state gives the same draws. */
export function drawPerturbations(n: number, poolSize: number, rng: Rng, o: SamplingOptions): Draw[] {
  return Array.from({ length: n }, () => {
    if (poolSize === 0 || rng.next() >= o.probability) return null;
    const member = rng.int(poolSize);
    return { member, scale: o.scale[0] + (o.scale[1] - o.scale[0]) * rng.next() };
  });
}

/**
 * x (pixel space [0,255], [n,H,W,C]) with each image's draw added and clipped to [0,255].
 * `pool` is the members stacked, [P,H,W,C].
 */
export function applyDraws(x: tf.Tensor4D, pool: tf.Tensor4D, draws: Draw[]): tf.Tensor4D {
  return tf.tidy(() => {
    const members = takeRows(
      pool,
      draws.map((d) => d?.member ?? 0),
    );
    const scales = tf.tensor4d(
      draws.map((d) => d?.scale ?? 0),
      [draws.length, 1, 1, 1],
    );
    return tf.clipByValue(tf.add(x, tf.mul(members, scales)), 0, 255) as tf.Tensor4D;
  });
}
