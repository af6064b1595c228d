import * as tf from '../../tf.js';
import type { OpDef } from './types.js';

/** Constant padding, one [before, after] per axis (batch included, where it must be [0, 0]). */
export const pad: OpDef<'pad'> = {
  kind: 'pad',
  shape(op, [x]) {
    if (op.pads.length !== x.length + 1 || op.pads[0][0] || op.pads[0][1] || op.pads.some(([a, b]) => a < 0 || b < 0))
      throw new Error(`pads ${JSON.stringify(op.pads)} do not fit [${x}] (one non-negative [before, after] per axis, none on the batch)`);
    return x.map((d, i) => d + op.pads[i + 1][0] + op.pads[i + 1][1]);
  },
  tfjs:
    (op) =>
    ([x]) =>
      tf.pad(x, op.pads, op.value ?? 0),
  onnx: {
    layout: 'any',
    forward(n) {
      const r = n.rank(0);
      const byStorage = Array.from(
        { length: r },
        (_, s) => n.op.pads[Array.from({ length: r }, (_, a) => a).find((a) => n.axis(a) === s)!],
      );
      return n.g.op('Pad', [
        n.inputs[0],
        n.g.ints([...byStorage.map((p) => p[0]), ...byStorage.map((p) => p[1])]),
        n.g.scalar(n.op.value ?? 0),
      ]);
    },
    backward(n, dy) {
      const r = n.rank(0);
      const axes = Array.from({ length: r - 1 }, (_, i) => i + 1);
      const starts = axes.map((a) => n.op.pads[a][0]);
      const ends = axes.map((a, i) => n.op.pads[a][0] + n.inShapes[0][i]);
      return [n.g.op('Slice', [dy, n.g.ints(starts), n.g.ints(ends), n.g.ints(axes.map((a) => n.axis(a)))])];
    },
  },
  samples: [
    {
      name: 'rows and columns',
      op: {
        kind: 'pad',
        pads: [
          [0, 0],
          [1, 2],
          [0, 1],
          [0, 0],
        ],
      },
      inputs: [[3, 3, 2]],
    },
    {
      name: 'channels, value 1',
      op: {
        kind: 'pad',
        pads: [
          [0, 0],
          [0, 0],
          [0, 0],
          [1, 1],
        ],
        value: 1,
      },
      inputs: [[2, 2, 2]],
    },
    {
      name: 'rank 2',
      op: {
        kind: 'pad',
        pads: [
          [0, 0],
          [2, 1],
        ],
      },
      inputs: [[4]],
    },
  ],
};
