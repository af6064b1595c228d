import * as tf from '../tf.js';
import { projectLp, type Norm } from '../math/lp.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * One ascent step on a universal perturbation from its gradient, projected back onto the Lp ball:
 * the step every gradient method on v takes (SGD-UAP, GD-UAP). 'sign': the gradient's sign (Linf) or
 * direction (L2); 'adam': Adam's direction (its moments are state to checkpoint). The direction is
 * rescaled to `lr` in the ball's norm, so step lengths read in pixels whatever the optimiser.
 */
export type AscentOptimizer = 'sign' | 'adam';

export class Ascent {
  private m: Float32Array;
  private s: Float32Array;
  private t = 0;

  constructor(
    private readonly shape: ImageShape,
    private readonly optimizer: AscentOptimizer,
  ) {
    const size = shape[0] * shape[1] * shape[2];
    this.m = new Float32Array(size);
    this.s = new Float32Array(size);
  }

  /** v + lr * direction(grad), projected onto the ball of radius xi; the caller disposes the old v. */
  step(v: tf.Tensor3D, grad: Float32Array, norm: Norm, lr: number, xi: number): tf.Tensor3D {
    return tf.tidy(() => {
      const g = tf.tensor3d(grad, this.shape);
      let dir: tf.Tensor3D;
      if (this.optimizer === 'adam') {
        this.t++;
        const m = tf.add(tf.mul(tf.tensor3d(this.m, this.shape), 0.9), tf.mul(g, 0.1));
        const s = tf.add(tf.mul(tf.tensor3d(this.s, this.shape), 0.999), tf.mul(tf.square(g), 0.001));
        this.m = m.dataSync() as Float32Array;
        this.s = s.dataSync() as Float32Array;
        dir = tf.div(tf.div(m, 1 - 0.9 ** this.t), tf.add(tf.sqrt(tf.div(s, 1 - 0.999 ** this.t)), 1e-8)) as tf.Tensor3D;
      } else dir = norm === 'inf' ? (tf.sign(g) as tf.Tensor3D) : g;
      return projectLp(tf.add(v, scaled(dir, norm, lr)) as tf.Tensor3D, norm, xi);
    });
  }

  /** Adam's moments and step count (nothing for sign steps), for a checkpoint. */
  state(): Record<string, Float32Array> {
    return this.optimizer === 'adam' ? { adamM: this.m, adamS: this.s, adamT: Float32Array.of(this.t) } : {};
  }

  restore(st: Record<string, Float32Array>): void {
    if (st.adamM) this.m = st.adamM;
    if (st.adamS) this.s = st.adamS;
    if (st.adamT) this.t = st.adamT[0];
  }
}

/** `u` rescaled to length `len` in the ball's norm (a zero direction stays zero). */
function scaled(u: tf.Tensor3D, norm: Norm, len: number): tf.Tensor3D {
  return tf.tidy(() => {
    const size = norm === 2 ? tf.norm(u) : tf.max(tf.abs(u));
    return tf.mul(u, tf.div(len, tf.maximum(size, 1e-20))) as tf.Tensor3D;
  });
}

/**
 * d/dv of a batch loss through clip(x + v, 0, 255): the images' input gradients dx [n, size], each
 * counted where x + v (`raw`) lies inside [0, 255], summed over the batch. A plain loop: TF.js wasm's
 * comparison and logical ops took three quarters of an SGD pass's main-thread time.
 */
export function batchGradient(dx: Float32Array, raw: Float32Array, size: number): Float32Array {
  const g = new Float32Array(size);
  for (let at = 0; at < raw.length; at += size) {
    for (let t = 0; t < size; t++) {
      const u = raw[at + t];
      if (u >= 0 && u <= 255) g[t] += dx[at + t];
    }
  }
  return g;
}
