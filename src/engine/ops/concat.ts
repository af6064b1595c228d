import * as tf from '../../tf.js';
import { onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import type { OpOf } from '../net.js';
import type { OnnxNode } from '../onnx/emit.js';
import { normAxis, type OpDef } from './types.js';

/** The storage axis joined: a blocked value's channels are axis 1 of its logical [N, C, H, W]. */
const joinAxis = (n: OnnxNode<OpOf<'concat'>>) => (n.layouts[0] === 'nchwc' ? 1 : n.axis(n.op.axis));

/** Joins the inputs along one axis (batch-inclusive index), with a fused activation. */
export const concat: OpDef<'concat'> = {
  kind: 'concat',
  shape(op, xs) {
    const a = normAxis(op.axis, xs[0].length + 1) - 1;
    if (a < 0 || a >= xs[0].length || xs.some((s) => s.length !== xs[0].length || s.some((d, i) => i !== a && d !== xs[0][i])))
      throw new Error(`inputs [${xs.join('], [')}] cannot be joined along axis ${op.axis}`);
    return xs[0].map((d, i) => (i === a ? xs.reduce((t, s) => t + s[a], 0) : d));
  },
  tfjs(op) {
    const act = tfjsActivation(op.act);
    return (xs) => act(tf.concat(xs, op.axis));
  },
  onnx: {
    layout: 'any',
    // Blocked values join along channels in whole blocks: each input's blocks, image by image, are
    // one run of memory, as a Concat over NCHW's channel axis copies them.
    blocked: (op, xs, padded) => !padded && op.act !== 'softmax' && xs.every((x) => x.length === 3) && normAxis(op.axis, 4) === 3,
    forward(n) {
      const pre = n.save('pre', n.g.op('Concat', n.inputs, { axis: joinAxis(n) }));
      return n.save('y', onnxActivation(n, pre, n.op.act));
    },
    backward(n, dy) {
      const d = onnxActivationBackward(n, dy, n.saved('pre'), n.saved('y'), n.op.act);
      const a = normAxis(n.op.axis, n.rank(0)) - 1;
      const outs = n.inputs.map((_, i) => n.g.fresh(`${n.name}_split${i}`));
      n.g.opMulti('Split', [d, n.g.ints(n.inShapes.map((s) => s[a]))], outs, { axis: joinAxis(n) });
      return outs;
    },
  },
  samples: [
    {
      name: 'channels',
      op: { kind: 'concat', axis: -1, act: 'linear' },
      inputs: [
        [3, 3, 2],
        [3, 3, 3],
      ],
    },
    {
      name: 'rows, relu',
      op: { kind: 'concat', axis: 1, act: 'relu' },
      inputs: [
        [2, 3, 2],
        [1, 3, 2],
      ],
    },
    {
      name: 'tokens (class token first)',
      op: { kind: 'concat', axis: 1, act: 'linear' },
      inputs: [
        [1, 4],
        [5, 4],
      ],
    },
  ],
};
