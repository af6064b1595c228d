import * as tf from '../../tf.js';
import { softmaxBackward } from './activation.js';
import { normAxis, type OpDef } from './types.js';

/** Softmax or log-softmax along one axis (batch-inclusive index). */
export const softmax: OpDef<'softmax'> = {
  kind: 'softmax',
  shape(op, [x]) {
    const a = normAxis(op.axis, x.length + 1);
    if (a < 1 || a > x.length) throw new Error(`axis ${op.axis} is not an axis of [${x}] other than the batch`);
    return x;
  },
  tfjs(op, _b, [x]) {
    const a = normAxis(op.axis, x.length + 1);
    const last = a === x.length;
    // TF.js normalises over the last axis only: move the axis there and back.
    const perm = Array.from({ length: x.length + 1 }, (_, i) => i);
    [perm[a], perm[x.length]] = [perm[x.length], perm[a]];
    const f = (t: tf.Tensor) => (op.log ? tf.logSoftmax(t) : tf.softmax(t));
    return ([t]) => (last ? f(t) : tf.transpose(f(tf.transpose(t, perm)), perm));
  },
  onnx: {
    layout: 'any',
    forward(n) {
      const axis = n.axis(n.op.axis);
      if (!n.op.log || n.e.target === 'cpu') return n.save('y', n.g.op(n.op.log ? 'LogSoftmax' : 'Softmax', [n.inputs[0]], { axis }));
      // WebGPU has no LogSoftmax kernel: x - max - log(sum(exp(x - max))), as the kernel computes it
      // (log(softmax) would underflow to -infinity for very unlikely classes).
      const g = n.g;
      const shifted = g.op('Sub', [n.inputs[0], g.op('ReduceMax', [n.inputs[0]], { axes: [axis], keepdims: 1 })]);
      return n.save(
        'y',
        g.op('Sub', [shifted, g.op('Log', [g.op('ReduceSum', [g.op('Exp', [shifted]), g.ints([axis])], { keepdims: 1 })])]),
      );
    },
    backward(n, dy) {
      const g = n.g;
      const axis = n.axis(n.op.axis);
      if (!n.op.log) return [softmaxBackward(n, dy, n.saved('y'), axis)];
      // log-softmax: dx = dy - sum(dy) * softmax
      const total = g.op('ReduceSum', [dy, g.ints([axis])], { keepdims: 1 });
      const reduced = n.outShape.map((d, i) => (i + 1 === normAxis(n.op.axis, n.rank()) ? 1 : d));
      return [g.op('Sub', [dy, n.e.rowsTimes(total, reduced, g.op('Exp', [n.saved('y')]), n.outShape, n.outLayout)])];
    },
  },
  samples: [
    { name: 'classes', op: { kind: 'softmax', axis: -1, log: false }, inputs: [[6]] },
    { name: 'log, classes', op: { kind: 'softmax', axis: 1, log: true }, inputs: [[6]] },
    { name: 'attention rows', op: { kind: 'softmax', axis: -1, log: false }, inputs: [[2, 3, 4]] },
    { name: 'channels of an image', op: { kind: 'softmax', axis: 3, log: false }, inputs: [[2, 2, 4]] },
    { name: 'rows of an image', op: { kind: 'softmax', axis: 1, log: true }, inputs: [[3, 2, 2]] },
  ],
};
