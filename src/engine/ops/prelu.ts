import * as tf from '../../tf.js';
import { sampleWeights as w, type OpDef } from './types.js';

/** max(x, 0) + slope * min(x, 0), the slope broadcast from the trailing axes (per channel, usually). */
export const prelu: OpDef<'prelu'> = {
  kind: 'prelu',
  shape(op, [x]) {
    const s = op.slope.shape;
    const full = [1, ...x];
    if (s.length > full.length || s.some((d, i) => d !== 1 && d !== full[full.length - s.length + i]))
      throw new Error(`slope [${s}] does not broadcast against [${x}]`);
    return x;
  },
  tfjs(op, b) {
    const slope = b.tensor(op.slope);
    return ([x]) => tf.prelu(x, slope);
  },
  onnx: {
    layout: 'any',
    forward(n) {
      const slope = n.save('slope', n.constant(n.op.slope));
      n.save('x', n.inputs[0]);
      return n.g.op('PRelu', [n.inputs[0], slope]);
    },
    backward(n, dy) {
      const g = n.g;
      return [n.perImage(dy, g.op('Where', [g.op('Greater', [n.saved('x'), g.scalar(0)]), g.scalar(1), n.saved('slope')]))];
    },
  },
  samples: [
    { name: 'per channel', op: { kind: 'prelu', slope: w([3], 1) }, inputs: [[4, 4, 3]] },
    { name: 'one slope', op: { kind: 'prelu', slope: w([1], 2) }, inputs: [[6]] },
  ],
};
