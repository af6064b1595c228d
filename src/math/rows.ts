import * as tf from '../tf.js';

/** Backends whose tensors live in CPU memory, where a JS row copy beats their gather kernel. */
const CPU_BACKENDS = new Set(['wasm', 'cpu']);

/**
 * x[idx] along the first axis (rows may repeat). On wasm and cpu, copied row by row in JS: TF.js's
 * wasm gather walks element by element, many times slower than a row copy (docs/speed.md). On GPU
 * backends, tf.gather: no read-back.
 */
export function takeRows<T extends tf.Tensor>(x: T, idx: ArrayLike<number>): T {
  if (!CPU_BACKENDS.has(tf.getBackend())) return tf.tidy(() => tf.gather(x, tf.tensor1d(Array.from(idx), 'int32'))) as T;
  const per = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = x.dataSync() as Float32Array | Int32Array | Uint8Array;
  const out = new (data.constructor as { new (n: number): typeof data })(idx.length * per);
  for (let j = 0; j < idx.length; j++) out.set(data.subarray(idx[j] * per, (idx[j] + 1) * per), j * per);
  return tf.tensor(out, [idx.length, ...x.shape.slice(1)], x.dtype) as T;
}
