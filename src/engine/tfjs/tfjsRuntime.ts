import * as tf from '../../tf.js';
import { imageSize, perturbedBytes, pickImages, type Batch } from '../../math/batch.js';
import { tensorOfBatch } from './batchTensor.js';
import type { Runtime } from '../runtime.js';
import type { ImageShape } from '../../math/imageShape.js';

/** What TF.js needs to run a model: its differentiable logits graph and their shape. */
export interface TfjsGraph {
  readonly inputShape: ImageShape;
  readonly numClasses: number;
  /** x: [N,H,W,C] float32 in pixel space; returns [N, numClasses]. */
  logits(x: tf.Tensor4D): tf.Tensor2D;
}

/** Rows per TF.js gradient pass when the model's memory limit is not known (measured at load otherwise). */
const DEFAULT_ROWS = 32;

/**
 * The runtime of a model TF.js runs itself (wasm, cpu, or a browser's WebGL / WebGPU): forward passes
 * of its logits graph, and vector-Jacobian products by tf.grad over the batch tiled k times. The same
 * interface as ONNX Runtime's, so that compute.ts has one path.
 */
export function tfjsRuntime(model: TfjsGraph, maxGradientRows?: number): Runtime {
  const K = model.numClasses;
  const forward = async (x: Batch): Promise<Float32Array> => {
    // Read outside tf.tidy: tidy walks a returned typed array element by element looking for tensors.
    const y = tf.tidy(() => model.logits(tensorOfBatch(x)));
    try {
      return y.dataSync() as Float32Array;
    } finally {
      y.dispose();
    }
  };
  return {
    get name() {
      return tf.getBackend(); // the TF.js backend in use now (tests switch it under one model)
    },
    sharedRows: false,
    maxRows: Math.min(DEFAULT_ROWS, maxGradientRows ?? DEFAULT_ROWS),
    forward,
    async forwardImages(pixels, n, v) {
      return forward(perturbedBytes(pixels.subarray(0, n * imageSize(model.inputShape)), model.inputShape, v));
    },
    async vjp(x, dy, out) {
      const n = x.n;
      const k = dy.length / (n * K);
      let logits: Float32Array | undefined;
      // The batch tiled k times: one row per cotangent.
      const tiled =
        k === 1
          ? x
          : pickImages(
              x,
              Int32Array.from({ length: n * k }, (_, r) => Math.floor(r / k)),
            );
      const dx = tf.tidy(() => {
        const weights = tf.tensor2d(dy, [n * k, K]);
        return tf.grad((t: tf.Tensor) => {
          const y = model.logits(t as tf.Tensor4D);
          if (!logits) {
            const all = y.dataSync() as Float32Array;
            logits = k === 1 ? all : Float32Array.from({ length: n * K }, (_, i) => all[Math.floor(i / K) * k * K + (i % K)]);
          }
          return tf.sum(tf.mul(y, weights));
        })(tensorOfBatch(tiled));
      });
      try {
        const rows = dx.dataSync() as Float32Array;
        if (!out) return { logits: logits!, dx: rows };
        out.set(rows);
        return { logits: logits!, dx: out };
      } finally {
        dx.dispose();
      }
    },
    async dispose() {},
  };
}
