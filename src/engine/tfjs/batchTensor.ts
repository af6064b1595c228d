import * as tf from '../../tf.js';
import type { ImageShape } from '../../math/imageShape.js';
import type { Batch } from '../../math/batch.js';

/**
 * The crossing between TF.js tensors and the runtimes' plain batches, for the code that still works on
 * tensors (the TF.js runtime itself, the start-up self-checks, the studio's worker, library users'
 * tensors).
 */

/**
 * A batch of a [n, H, W, C] tensor's values: read back (a copy on wasm; on the cpu backend it may be the
 * tensor's own memory, so treat the batch as read-only while the tensor lives).
 */
export function batchOfTensor(x: tf.Tensor4D): Batch {
  const [n, h, w, c] = x.shape;
  return { data: x.dataSync() as Float32Array, n, shape: [h, w, c] as ImageShape };
}

/**
 * A [n, H, W, C] tensor of a batch's values (the caller disposes it). On the cpu backend the tensor may
 * hold the batch's own memory: do not write to either while both are in use.
 */
export function tensorOfBatch(x: Batch): tf.Tensor4D {
  return tf.tensor4d(x.data, [x.n, ...x.shape]);
}
