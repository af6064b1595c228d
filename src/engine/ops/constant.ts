import * as tf from '../../tf.js';
import { storageDims } from '../onnx/emit.js';
import { sampleWeights as w, type OpDef } from './types.js';

/** A constant value repeated for every image (ViT's class token); the input only sets the batch size. */
export const constant: OpDef<'const'> = {
  kind: 'const',
  shape: (op) => op.value.shape,
  tfjs(op, b) {
    const v = b.tensor({ data: op.value.data, shape: [1, ...op.value.shape] });
    return ([x]) => tf.tile(v, [x.shape[0], ...op.value.shape.map(() => 1)]);
  },
  onnx: {
    layout: 'plain',
    forward(n) {
      const g = n.g;
      const v = g.floats(n.op.value.data, [1, ...n.op.value.shape]);
      return g.op('Expand', [
        v,
        g.op(
          'Concat',
          [g.op('Slice', [g.op('Shape', [n.inputs[0]]), g.ints([0]), g.ints([1])]), g.ints(storageDims(n.outShape, 'plain'))],
          { axis: 0 },
        ),
      ]);
    },
    backward: () => [null],
  },
  samples: [{ name: 'class token', op: { kind: 'const', value: w([1, 4], 1) }, inputs: [[3]] }],
};
