import type * as tf from '@tensorflow/tfjs';

/**
 * A runtime other than TF.js that runs a classifier's batched forward passes and input gradients
 * (ONNX Runtime). Inputs are pixel-space NHWC batches; outputs are plain arrays.
 */
export interface Runtime {
  readonly name: string;
  /** Rows (images x cotangents) one vjp call may hold; TF.js's measured limits do not apply here. */
  readonly maxRows: number;
  /** logits [n * numClasses] of a batch x [n, H, W, C]. */
  forward(x: tf.Tensor4D): Promise<Float32Array>;
  /**
   * logits [n * numClasses] of a batch, and for each image its k = dy.length / (n * numClasses)
   * vector-Jacobian products dx[i, j] = (d logits_i / d x_i)^T dy[i, j]: dy [n, k, numClasses] ->
   * dx [n, k, H, W, C], from one forward pass.
   */
  vjp(x: tf.Tensor4D, dy: Float32Array): Promise<{ logits: Float32Array; dx: Float32Array }>;
  dispose(): Promise<void>;
}
