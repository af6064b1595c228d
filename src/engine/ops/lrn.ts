import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import type { OpDef } from './types.js';

/**
 * Local response normalisation across channels, as ONNX defines it (CaffeNet, GoogLeNet):
 * y = x * (bias + alpha / size * sum of x^2 over channels c - floor((size-1)/2) .. c + ceil((size-1)/2))^-beta.
 * The channel window sum is a 1x1 convolution with a band matrix on ONNX Runtime, slices on TF.js.
 */

type Lrn = OpOf<'lrn'>;

const window = (op: Lrn) => ({ lo: Math.floor((op.size - 1) / 2), hi: Math.ceil((op.size - 1) / 2) });

/** [C, C, 1, 1]: row o sums the input channels in o's window (transposed: the channels whose window holds o). */
function band(op: Lrn, channels: number, transposed: boolean): Float32Array {
  const { lo, hi } = window(op);
  const m = new Float32Array(channels * channels);
  for (let o = 0; o < channels; o++)
    for (let i = Math.max(0, o - lo); i <= Math.min(channels - 1, o + hi); i++) m[transposed ? i * channels + o : o * channels + i] = 1;
  return m;
}

export const lrn: OpDef<'lrn'> = {
  kind: 'lrn',
  shape(op, [x]) {
    if (x.length !== 3 || !(op.size >= 1)) throw new Error(`LRN takes [H, W, C] images and a size >= 1, got [${x}], size ${op.size}`);
    return x;
  },
  tfjs(op, _b, [x]) {
    const { lo, hi } = window(op);
    const C = x[2];
    return ([t]) => {
      const sq = tf.pad(tf.square(t), [
        [0, 0],
        [0, 0],
        [0, 0],
        [lo, hi],
      ]);
      let sum = tf.slice(sq, [0, 0, 0, 0], [-1, -1, -1, C]);
      for (let k = 1; k < op.size; k++) sum = tf.add(sum, tf.slice(sq, [0, 0, 0, k], [-1, -1, -1, C]));
      return tf.mul(t, tf.pow(tf.add(tf.mul(sum, op.alpha / op.size), op.bias), -op.beta));
    };
  },
  onnx: {
    layout: 'nchw',
    forward(n) {
      const g = n.g;
      const C = n.inShapes[0][2];
      const x = n.save('x', n.inputs[0]);
      const sum = g.op('Conv', [g.op('Mul', [x, x]), g.floats(band(n.op, C, false), [C, C, 1, 1])], { kernel_shape: [1, 1] });
      const base = n.save('base', g.op('Add', [g.op('Mul', [sum, g.scalar(n.op.alpha / n.op.size)]), g.scalar(n.op.bias)]));
      return g.op('Mul', [x, g.op('Pow', [base, g.scalar(-n.op.beta)])]);
    },
    backward(n, dy) {
      // dx = dy * base^-beta - (2 alpha beta / size) * x * bandT(dy * x * base^(-beta-1))
      const g = n.g;
      const { alpha, beta, size } = n.op;
      const C = n.inShapes[0][2];
      const x = n.saved('x');
      const base = n.saved('base');
      const direct = n.perImage(dy, g.op('Pow', [base, g.scalar(-beta)]));
      const through = n.perImage(dy, g.op('Mul', [x, g.op('Pow', [base, g.scalar(-beta - 1)])]));
      const spread = g.op('Conv', [through, g.floats(band(n.op, C, true), [C, C, 1, 1])], { kernel_shape: [1, 1] });
      return [g.op('Sub', [direct, g.op('Mul', [n.perImage(spread, x), g.scalar((2 * alpha * beta) / size)])])];
    },
  },
  samples: [
    { name: 'size 5 (CaffeNet)', op: { kind: 'lrn', size: 5, alpha: 1e-2, beta: 0.75, bias: 1 }, inputs: [[3, 3, 7]] },
    { name: 'size 4 (asymmetric window), bias 2', op: { kind: 'lrn', size: 4, alpha: 0.5, beta: 0.5, bias: 2 }, inputs: [[2, 3, 5]] },
  ],
};
