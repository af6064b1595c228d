import type { Batch } from '../math/batch.js';

/**
 * Where a classifier's batched forward passes and input gradients run: ONNX Runtime
 * (src/engine/onnx/runtime.ts) or TF.js (src/engine/tfjs/tfjsRuntime.ts). Every attack and evaluation goes
 * through this one head (compute.ts). Inputs are plain pixel-space NHWC batches (batch.ts); outputs are
 * plain arrays: no runtime's containers cross the seam, so a device engine can sit behind it as well.
 */
export interface Runtime {
  /** 'onnxruntime', or the TF.js backend ('wasm', 'cpu', 'webgl', 'webgpu'). */
  readonly name: string;
  /** vjp's `out` must be backed by a SharedArrayBuffer (worker threads write rows into it). */
  readonly sharedRows: boolean;
  /** How it runs, for the log line (e.g. "2 workers x 1 thread"). */
  readonly layout?: string;
  /** Images per forward call that give every worker full runs, where that is more than a usual batch (small models on ONNX Runtime). */
  readonly forwardBatch?: number;
  /** Rows (images x cotangents) one vjp call may hold; TF.js's measured limits do not apply here. */
  readonly maxRows: number;
  /** logits [n * numClasses] of a batch x [n, H, W, C]. */
  forward(x: Batch): Promise<Float32Array>;
  /** logits of clip(pixels + v, 0, 255) for n images stored as uint8 [n, H, W, C]; v [H, W, C] or none. */
  forwardImages(pixels: Uint8Array, n: number, v: Float32Array | null): Promise<Float32Array>;
  /**
   * logits [n * numClasses] of a batch, and for each image its k = dy.length / (n * numClasses)
   * vector-Jacobian products dx[i, j] = (d logits_i / d x_i)^T dy[i, j]: dy [n, k, numClasses] ->
   * dx [n, k, H, W, C]. dx is written into `out` when given (backed by a SharedArrayBuffer when
   * `sharedRows`).
   */
  vjp(x: Batch, dy: Float32Array, out?: Float32Array): Promise<{ logits: Float32Array; dx: Float32Array }>;
  dispose(): Promise<void>;
}
