import * as tf from '../../tf.js';
import type { OpOf, Weights } from '../net.js';
import type { OnnxNode } from '../onnx/emit.js';
import { normAxis, sampleWeights as w, type OpDef } from './types.js';

/** x * scale + shift along one axis (default the last): batch-norm that could not be folded, preprocessing. */

/** A per-channel vector shaped to broadcast along `axis` of a value of `rank` axes (batch included). */
function along(v: Weights, axis: number, rank: number): Weights {
  const a = normAxis(axis, rank);
  return { data: v.data, shape: [v.data.length, ...new Array<number>(rank - 1 - a).fill(1)] };
}

const axisOf = (op: OpOf<'affine'>) => op.axis ?? -1;

/**
 * The scales as a constant broadcast against the input's storage, made by the first pass that needs
 * it (a forward-only model with the batch-norm form must not hold it unused) and shared with the other.
 */
const scaleOf = (n: OnnxNode<OpOf<'affine'>>) => n.once('scale', () => n.constant(along(n.op.scale, axisOf(n.op), n.rank(0))));

export const affine: OpDef<'affine'> = {
  kind: 'affine',
  shape(op, [x]) {
    const a = normAxis(axisOf(op), x.length + 1);
    if (a < 1 || x[a - 1] !== op.scale.data.length || op.shift.data.length !== op.scale.data.length)
      throw new Error(`${op.scale.data.length} scales and ${op.shift.data.length} shifts do not fit axis ${axisOf(op)} of [${x}]`);
    return x;
  },
  tfjs(op, b, [x]) {
    const scale = b.tensor(along(op.scale, axisOf(op), x.length + 1));
    const shift = b.tensor(along(op.shift, axisOf(op), x.length + 1));
    return ([t]) => tf.add(tf.mul(t, scale), shift);
  },
  onnx: {
    layout: 'any',
    forward(n) {
      const r = n.rank(0);
      if (r === 4 && n.layouts[0] === 'nchw' && normAxis(axisOf(n.op), r) === 3) {
        // Per channel of an NCHW image: a BatchNormalization (mean 0, variance 1, epsilon 0, so exactly
        // x * scale + shift), which ONNX Runtime turns into a blocked-layout kernel fused with the ReLU
        // after it. As Mul and Add, DenseNet's 62 unfoldable batch norms each cost two layout conversions.
        const c = n.op.scale.data.length;
        const g = n.g;
        return g.op(
          'BatchNormalization',
          [
            n.inputs[0],
            g.floats(n.op.scale.data, [c]),
            g.floats(n.op.shift.data, [c]),
            g.floats(new Float32Array(c), [c]),
            g.floats(new Float32Array(c).fill(1), [c]),
          ],
          { epsilon: 0 },
        );
      }
      return n.g.op('Add', [n.g.op('Mul', [n.inputs[0], scaleOf(n)]), n.constant(along(n.op.shift, axisOf(n.op), r))]);
    },
    backward(n, dy) {
      return [n.g.op('Mul', [dy, scaleOf(n)])];
    },
  },
  samples: [
    { name: 'channels of an image', op: { kind: 'affine', scale: w([3], 1), shift: w([3], 2) }, inputs: [[4, 4, 3]] },
    { name: 'axis 1 of a rank-3 value', op: { kind: 'affine', scale: w([4], 3), shift: w([4], 4), axis: 1 }, inputs: [[4, 5]] },
  ],
};
