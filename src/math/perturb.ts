import * as tf from '../tf.js';

/** clip(x + v, 0, 255): perturbed images always stay valid pixels. */
export function perturb(x: tf.Tensor4D, v: tf.Tensor3D | null): tf.Tensor4D {
  return v ? (tf.clipByValue(tf.add(x, v), 0, 255) as tf.Tensor4D) : x;
}
