import * as tf from '@tensorflow/tfjs';

/**
 * x[idx] along the first axis (rows may repeat), copied row by row in JS. TF.js's wasm gather walks
 * element by element: picking 12 of 16 images at 224 took 66 ms there against 3 ms here, and it was
 * a fifth of DeepFool's time.
 */
export function takeRows<T extends tf.Tensor>(x: T, idx: ArrayLike<number>): T {
  const per = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = x.dataSync() as Float32Array | Int32Array | Uint8Array;
  const out = new (data.constructor as { new (n: number): typeof data })(idx.length * per);
  for (let j = 0; j < idx.length; j++) out.set(data.subarray(idx[j] * per, (idx[j] + 1) * per), j * per);
  return tf.tensor(out, [idx.length, ...x.shape.slice(1)], x.dtype) as T;
}
