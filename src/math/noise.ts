import * as tf from '../tf.js';
import { Rng } from './random.js';
import { checkBall, type Norm } from './lp.js';
import type { ImageShape } from './imageShape.js';

/** Seeded noise of a given kind ('sign': uniform random signs; 'gaussian'), scaled to norm `radius` in `norm`. */
export function noiseOfNorm(kind: 'sign' | 'gaussian', shape: ImageShape, norm: Norm, radius: number, seed: number): tf.Tensor3D {
  const raw = randomPerturbation(shape, kind === 'sign' ? 'inf' : 2, 1, seed);
  const out = tf.tidy(() => {
    const size = norm === 2 ? tf.norm(raw) : tf.max(tf.abs(raw));
    return tf.mul(raw, tf.div(radius, size)) as tf.Tensor3D;
  });
  raw.dispose();
  return out;
}

/**
 * Seeded random perturbation of norm exactly xi: for Linf, uniform random signs times xi (a corner of
 * the ball, the strongest random Linf noise); for L2, a Gaussian direction scaled to length xi.
 */
export function randomPerturbation(shape: ImageShape, norm: Norm, xi: number, seed: number): tf.Tensor3D {
  checkBall('randomPerturbation', norm, xi);
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0))
    throw new RangeError(`randomPerturbation: shape ${JSON.stringify(shape)}: expected [H, W, C] of positive integers`);
  const rng = new Rng(seed);
  const size = shape[0] * shape[1] * shape[2];
  const data = new Float32Array(size);
  if (norm === 'inf') {
    for (let i = 0; i < size; i++) data[i] = rng.next() < 0.5 ? -xi : xi;
  } else {
    let sq = 0;
    for (let i = 0; i < size; i++) {
      data[i] = rng.normal();
      sq += data[i] * data[i];
    }
    const f = xi / Math.sqrt(sq);
    for (let i = 0; i < size; i++) data[i] *= f;
  }
  return tf.tensor3d(data, shape);
}
