import * as tf from '@tensorflow/tfjs';
import { weights, type Net } from './net.js';
import { netToTfGraph } from './tfjsNet.js';
import { runPlainGraph } from './plainGraph.js';

/**
 * A tiny network with one of each operation attacks differentiate through (strided conv + relu6,
 * depthwise conv, 2x2 max pooling, leaky ReLU, 1x1 conv, global mean, dense): runtimes and backends
 * must reproduce its input gradient before they are used.
 */
export function selfCheckNet(): Net {
  const w = (shape: number[], seed: number) =>
    weights(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * 0.7), shape);
  return {
    input: 'x',
    output: 'fc',
    nodes: [
      { name: 'c1', inputs: ['x'], op: { kind: 'conv', depthwise: false, kernel: w([3, 3, 3, 4], 1), bias: w([4], 2), strides: [2, 2], padding: 'same', act: 'relu6' } },
      { name: 'dw', inputs: ['c1'], op: { kind: 'conv', depthwise: true, kernel: w([3, 3, 4, 1], 3), strides: [1, 1], padding: 'same', act: { leaky: 0.1 } } },
      { name: 'mp', inputs: ['dw'], op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [2, 2], padding: 'same' } },
      { name: 'pw', inputs: ['mp'], op: { kind: 'conv', depthwise: false, kernel: w([1, 1, 4, 5], 4), strides: [1, 1], padding: 'valid', act: 'relu' } },
      { name: 'gap', inputs: ['pw'], op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: false } },
      { name: 'fc', inputs: ['gap'], op: { kind: 'dense', kernel: w([5, 3], 5), bias: w([3], 6), act: 'linear' } },
    ],
  };
}

export const SELF_CHECK_SHAPE: [number, number, number] = [9, 9, 3];

/** The probe batch (2 images) and cotangent used by every self-check. */
export function selfCheckInputs(): { x: tf.Tensor4D; dy: Float32Array } {
  const [h, w, c] = SELF_CHECK_SHAPE;
  const x = tf.tensor4d(Float32Array.from({ length: 2 * h * w * c }, (_, i) => 3 * Math.sin(i * 0.37) + Math.cos(i * 1.7)), [2, h, w, c]);
  return { x, dy: Float32Array.from([1, -2, 0.5, -1, 0.25, 2]) };
}

/** max |a - b| / max |b|: the error measure of every gradient comparison in the project. */
export function maxRelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return a.length === b.length ? diff / Math.max(scale, 1e-12) : Infinity;
}

export function closeEnough(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4): boolean {
  return maxRelativeDifference(a, b) <= tol;
}

/** The self-check network's logits and input gradient on the current TF.js backend. */
export function tfjsProbe(): { logits: number[]; dx: number[] } {
  const g = netToTfGraph(selfCheckNet());
  const { x, dy } = selfCheckInputs();
  try {
    return tf.tidy(() => {
      const weights = tf.tensor2d(dy, [2, 3]);
      let logits: number[] = [];
      const dx = tf.grad((t: tf.Tensor) => {
        const y = runPlainGraph(g, t);
        logits = Array.from(y.dataSync());
        return tf.sum(tf.mul(y, weights));
      })(x);
      return { logits, dx: Array.from(dx.dataSync()) };
    });
  } finally {
    tf.dispose([x, ...g.owned]);
  }
}

