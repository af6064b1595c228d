import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import { normAxis, type OpDef, type Shape } from './types.js';

/** x[begin:end:step] along one axis, with Python's clamping; steps 1 and -1 (reversal). */

type Slice = OpOf<'slice'>;

/** The first index and the count Python's slicing takes on an axis of `dim` entries. */
function range(op: Slice, dim: number): { start: number; count: number } {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  const at = (v: number) => (v < 0 ? v + dim : v);
  if (op.step > 0) {
    const start = clamp(at(op.begin), 0, dim);
    const end = clamp(at(op.end), 0, dim);
    return { start, count: Math.max(0, Math.ceil((end - start) / op.step)) };
  }
  const start = clamp(at(op.begin), -1, dim - 1);
  const end = clamp(at(op.end), -1, dim - 1);
  return { start, count: Math.max(0, Math.ceil((start - end) / -op.step)) };
}

const axisIn = (op: Slice, x: Shape) => normAxis(op.axis, x.length + 1) - 1;

export const slice: OpDef<'slice'> = {
  kind: 'slice',
  shape(op, [x]) {
    const a = axisIn(op, x);
    if (a < 0 || a >= x.length) throw new Error(`axis ${op.axis} is not an axis of [${x}] other than the batch`);
    if (op.step !== 1 && op.step !== -1) throw new Error(`slices with step ${op.step} are not supported (only 1 and -1)`);
    const { count } = range(op, x[a]);
    if (count < 1) throw new Error(`slice ${op.begin}:${op.end}:${op.step} of axis ${op.axis} of [${x}] is empty`);
    return x.map((d, i) => (i === a ? count : d));
  },
  tfjs(op, _b, [x]) {
    const a = axisIn(op, x);
    const { start, count } = range(op, x[a]);
    const begin = x.map((_, i) => (i === a ? (op.step > 0 ? start : start - count + 1) : 0));
    const sizes = x.map((d, i) => (i === a ? count : d));
    return ([t]) => {
      const part = tf.slice(t, [0, ...begin], [-1, ...sizes]);
      return op.step > 0 ? part : tf.reverse(part, a + 1);
    };
  },
  onnx: {
    layout: 'any',
    forward(n) {
      const g = n.g;
      const { start, count } = range(n.op, n.inShapes[0][axisIn(n.op, n.inShapes[0])]);
      const end = n.op.step > 0 ? start + count : start - count;
      // An end of -1 with step -1 means "before index 0": ONNX reads it as the last index, so use a large negative.
      return g.op('Slice', [
        n.inputs[0],
        g.ints([start]),
        g.ints([end < 0 ? -(2 ** 53 - 1) : end]),
        g.ints([n.axis(n.op.axis)]),
        g.ints([n.op.step]),
      ]);
    },
    backward(n, dy) {
      const g = n.g;
      const x = n.inShapes[0];
      const a = axisIn(n.op, x);
      const { start, count } = range(n.op, x[a]);
      const lo = n.op.step > 0 ? start : start - count + 1;
      const d = n.op.step > 0 ? dy : g.op('Slice', [dy, g.ints([-1]), g.ints([-(2 ** 53 - 1)]), g.ints([n.axis(n.op.axis)]), g.ints([-1])]);
      const r = n.rank(0);
      const before = new Array<number>(r).fill(0);
      const after = new Array<number>(r).fill(0);
      before[n.axis(n.op.axis)] = lo;
      after[n.axis(n.op.axis)] = x[a] - lo - count;
      return [g.op('Pad', [d, g.ints([...before, ...after])])];
    },
  },
  samples: [
    { name: 'drop the first class', op: { kind: 'slice', axis: -1, begin: 1, end: 2 ** 53 - 1, step: 1 }, inputs: [[6]] },
    { name: 'reverse the channels (BGR)', op: { kind: 'slice', axis: -1, begin: -1, end: -(2 ** 53 - 1), step: -1 }, inputs: [[3, 3, 3]] },
    { name: 'middle rows', op: { kind: 'slice', axis: 1, begin: 1, end: -1, step: 1 }, inputs: [[5, 3, 2]] },
    { name: 'class token', op: { kind: 'slice', axis: 1, begin: 0, end: 1, step: 1 }, inputs: [[4, 3]] },
  ],
};
