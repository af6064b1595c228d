import type * as tf from '@tensorflow/tfjs';

/**
 * A runtime other than TF.js that runs a classifier's batched forward passes and input gradients
 * (ONNX Runtime). Inputs are pixel-space NHWC batches; outputs are plain arrays.
 */
export interface Runtime {
  readonly name: string;
  /** logits [n * numClasses] of a batch x [n, H, W, C]. */
  forward(x: tf.Tensor4D): Promise<Float32Array>;
  /** logits and dx = (d logits / dx)^T dy for a batch, dy [n * numClasses]. */
  vjp(x: tf.Tensor4D, dy: Float32Array): Promise<{ logits: Float32Array; dx: Float32Array }>;
  dispose(): Promise<void>;
}
