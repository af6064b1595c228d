import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import { storageDims, type OnnxNode } from '../onnx/emit.js';
import { NCHWC_DOMAIN } from '../onnx/builder.js';
import { normAxis, type OpDef, type Shape } from './types.js';

/** Mean, max or sum over axes (batch-inclusive indices; the batch axis is never reduced). */

type Reduce = OpOf<'reduce'>;

const axesOf = (op: Reduce, rank: number) => [...new Set(op.axes.map((a) => normAxis(a, rank)))].sort();

/** A mean or sum over H and W of an image value: the reductions a blocked value can take (per channel). */
const spatial = (op: Reduce, x: Shape) => x.length === 3 && op.mode !== 'max' && axesOf(op, 4).join() === '1,2';

/** The input's shape with the reduced axes kept as 1. */
const keptShape = (op: Reduce, x: Shape) => x.map((d, i) => (axesOf(op, x.length + 1).includes(i + 1) ? 1 : d));

/**
 * A spatial mean or sum of a blocked value (an SE block's squeeze): ONNX Runtime's blocked global
 * pooling, or a sum over H and W of the blocked view; the result blocked [N, C, 1, 1], or [N, C].
 */
function blockedForward(n: OnnxNode<Reduce>): string {
  const g = n.g;
  const x = n.inShapes[0];
  const kept = keptShape(n.op, x);
  const pooled =
    n.op.mode === 'mean' ? g.opIn(NCHWC_DOMAIN, 'GlobalAveragePool', [n.inputs[0]]) : n.e.sumPixels(n.inputs[0], x, [true, true]);
  return n.op.keepDims ? pooled : g.op('Flatten', [n.e.convert(pooled, 'nchwc', 'nchw', kept)], { axis: 1 });
}

/** dx of blockedForward: each channel's row value spread over H and W (scaled for a mean). */
function blockedBackward(n: OnnxNode<Reduce>, dy: string): string {
  const g = n.g;
  const x = n.inShapes[0];
  const kept = keptShape(n.op, x);
  const rows = n.op.keepDims ? dy : n.e.convert(g.op('Reshape', [dy, g.ints([-1, ...storageDims(kept, 'nchw')])]), 'nchw', 'nchwc', kept);
  const scaled = n.op.mode === 'mean' ? g.op('Mul', [rows, g.scalar(1 / (x[0] * x[1]))]) : rows;
  // Widened over W first (broadcastOperand), then over H: one Expand straight from [.., 1, 1, b] copies
  // runs of b values, several times slower.
  const row = n.e.broadcastOperand(scaled, kept, x, 'nchwc', [-1]);
  const spread = g.op('Expand', [row, g.ints([1, ...n.e.view(x, 'nchwc')])]);
  return g.op('Reshape', [spread, g.ints([-1, ...n.e.dims(x, 'nchwc')])]);
}

export const reduce: OpDef<'reduce'> = {
  kind: 'reduce',
  shape(op, [x]) {
    const axes = axesOf(op, x.length + 1);
    if (axes.some((a) => a < 1 || a > x.length))
      throw new Error(`axes [${op.axes}] do not fit [${x}] (the batch axis 0 cannot be reduced)`);
    return op.keepDims ? keptShape(op, x) : x.filter((_, i) => !axes.includes(i + 1));
  },
  tfjs(op, _b, [x]) {
    const axes = axesOf(op, x.length + 1);
    const f = op.mode === 'mean' ? tf.mean : op.mode === 'max' ? tf.max : tf.sum;
    return ([t]) => f(t, axes, op.keepDims);
  },
  onnx: {
    // NCHW storage keeps the result's axis order only when reduced axes stay (or C is the one left).
    layout(op, [x]) {
      if (op.keepDims || x.length !== 3) return 'any';
      const left = [1, 2, 3].filter((a) => !axesOf(op, 4).includes(a));
      return left.includes(3) && left.length > 1 ? 'plain' : 'any';
    },
    blocked: (op, [x]) => spatial(op, x),
    forward(n) {
      if (n.layouts[0] === 'nchwc') return blockedForward(n);
      const axes = axesOf(n.op, n.rank(0)).map((a) => n.axis(a));
      const keep = n.op.keepDims ? 1 : 0;
      n.save('x', n.inputs[0]);
      if (n.op.mode === 'sum') return n.g.op('ReduceSum', [n.inputs[0], n.g.ints(axes)], { keepdims: keep });
      if (n.layouts[0] === 'nchw' && axes.join() === '2,3') {
        // Global pooling rather than a reduction: ONNX Runtime keeps it in its blocked (NCHWc) layout,
        // where a ReduceMean costs a layout conversion on each side (ten of them in MobileNet v3).
        const pooled = n.save('kept', n.g.op(n.op.mode === 'mean' ? 'GlobalAveragePool' : 'GlobalMaxPool', [n.inputs[0]]));
        return keep ? pooled : n.g.op('Flatten', [pooled], { axis: 1 });
      }
      const y = n.g.op(n.op.mode === 'mean' ? 'ReduceMean' : 'ReduceMax', [n.inputs[0]], { axes, keepdims: keep });
      n.save('kept', keep ? y : n.g.op('Reshape', [y, n.g.ints([0, ...storageDims(keptShape(n.op, n.inShapes[0]), n.layouts[0])])]));
      return y;
    },
    backward(n, dy) {
      if (n.layouts[0] === 'nchwc') return [blockedBackward(n, dy)];
      const g = n.g;
      const x = n.inShapes[0];
      const kept = storageDims(keptShape(n.op, x), n.layouts[0]);
      const inDims = n.dims(0);
      const spread = (rows: string) =>
        g.op('Expand', [n.op.keepDims ? rows : g.op('Reshape', [rows, g.ints([-1, ...kept])]), g.ints([1, ...inDims])]);
      if (n.op.mode === 'sum') return [spread(dy)];
      if (n.op.mode === 'mean') {
        const count = x.reduce((a, d, i) => (axesOf(n.op, x.length + 1).includes(i + 1) ? a * d : a), 1);
        return [spread(g.op('Mul', [dy, g.scalar(1 / count)]))];
      }
      // Max: dy goes to the inputs equal to the maximum (ties all get it, as for max pooling).
      const atMax = g.op('Cast', [g.op('Equal', [n.saved('x'), n.saved('kept')])], { to: 1 });
      return [n.e.perImage(spread(dy), atMax, x, n.layouts[0])];
    },
  },
  samples: [
    { name: 'global mean (keepDims)', op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: true }, inputs: [[4, 4, 3]] },
    { name: 'global mean', op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: false }, inputs: [[4, 5, 3]] },
    { name: 'global max', op: { kind: 'reduce', mode: 'max', axes: [1, 2], keepDims: false }, inputs: [[4, 4, 3]] },
    { name: 'mean over channels (keepDims)', op: { kind: 'reduce', mode: 'mean', axes: [3], keepDims: true }, inputs: [[3, 3, 4]] },
    { name: 'sum over rows', op: { kind: 'reduce', mode: 'sum', axes: [1], keepDims: false }, inputs: [[3, 4, 2]] },
    { name: 'mean over the last axis of tokens', op: { kind: 'reduce', mode: 'mean', axes: [-1], keepDims: false }, inputs: [[4, 6]] },
  ],
};
