import * as tf from '../../tf.js';
import type { OpDef } from './types.js';

/** Permutes the axes of each image's value; perm[0] = 0 (the batch stays first). */
export const transpose: OpDef<'transpose'> = {
  kind: 'transpose',
  shape(op, [x]) {
    const r = x.length + 1;
    if (op.perm.length !== r || op.perm[0] !== 0 || [...op.perm].sort((a, b) => a - b).some((p, i) => p !== i))
      throw new Error(`perm [${op.perm}] is not a permutation of the ${r} axes of [N, ${x}] keeping the batch first`);
    return op.perm.slice(1).map((p) => x[p - 1]);
  },
  tfjs:
    (op) =>
    ([x]) =>
      tf.transpose(x, op.perm),
  onnx: {
    layout: 'plain',
    forward: (n) => n.g.op('Transpose', [n.inputs[0]], { perm: n.op.perm }),
    backward(n, dy) {
      const inverse = n.op.perm.map((_, i) => n.op.perm.indexOf(i));
      return [n.g.op('Transpose', [dy], { perm: inverse })];
    },
  },
  samples: [
    { name: 'NHWC to NCHW', op: { kind: 'transpose', perm: [0, 3, 1, 2] }, inputs: [[3, 4, 2]] },
    { name: 'swap the last two axes of tokens', op: { kind: 'transpose', perm: [0, 2, 1] }, inputs: [[3, 5]] },
    { name: 'rank 5 (channel shuffle)', op: { kind: 'transpose', perm: [0, 2, 1, 3, 4] }, inputs: [[2, 3, 2, 2]] },
  ],
};
