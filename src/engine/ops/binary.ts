import * as tf from '../../tf.js';
import { finiteEverywhere, onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import { sampleWeights as w, type OpDef, type Shape } from './types.js';

/**
 * Element-wise add / sub / mul / div of the inputs (same rank, numpy broadcasting: SE blocks multiply
 * [N, H, W, C] by [N, 1, 1, C]) or of the input and a constant, with a fused activation.
 */

const ONNX = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div' } as const;
const TF = { add: tf.add, sub: tf.sub, mul: tf.mul, div: tf.div } as const;

function broadcast(shapes: Shape[]): Shape {
  const r = shapes[0].length;
  if (shapes.some((s) => s.length !== r)) throw new Error(`inputs [${shapes.join('], [')}] differ in rank`);
  return shapes[0].map((_, i) => {
    const m = Math.max(...shapes.map((s) => s[i]));
    if (shapes.some((s) => s[i] !== 1 && s[i] !== m)) throw new Error(`inputs [${shapes.join('], [')}] do not broadcast`);
    return m;
  });
}

export const binary: OpDef<'binary'> = {
  kind: 'binary',
  shape(op, xs) {
    if ((op.op === 'mul' || op.op === 'div') && xs.length + (op.constant ? 1 : 0) !== 2)
      throw new Error(`${op.op} takes two operands, got ${xs.length + (op.constant ? 1 : 0)}`);
    if (!op.constant) return broadcast(xs);
    const full = [1, ...xs[0]];
    const c = op.constant.weights.shape;
    if (xs.length !== 1 || c.length > full.length || c.some((d, i) => d !== 1 && d !== full[full.length - c.length + i]))
      throw new Error(`constant [${c}] does not broadcast against [${xs[0]}]`);
    return xs[0];
  },
  tfjs(op, b) {
    const f = TF[op.op];
    const act = tfjsActivation(op.act);
    const c = op.constant && b.tensor(op.constant.weights);
    if (c) return ([x]) => act(op.constant!.first ? f(c, x) : f(x, c));
    return (xs) => act(xs.slice(1).reduce((a, t) => f(a, t), xs[0]));
  },
  onnx: {
    layout: 'any',
    // Blocked operands broadcast over H and W only (an SE block's [1, 1, C] scale), and a quotient only
    // between equal shapes with no padding lanes (0 / 0 there would reach real channels as NaN).
    blocked(op, xs, padded) {
      if (op.act === 'softmax' || (op.constant && op.constant.weights.shape.length > 0)) return false;
      if (padded && (op.op === 'div' || !finiteEverywhere(op.act))) return false;
      const channels = (x: Shape) => x[x.length - 1];
      const same = xs.every((x) => x.join() === xs[0].join());
      return same || (op.op !== 'div' && xs.every((x) => channels(x) === channels(xs[0])));
    },
    forward(n) {
      const type = ONNX[n.op.op];
      const e = n.e;
      let pre: string;
      if (n.op.constant) {
        const c = n.save('c', n.constant(n.op.constant.weights));
        pre = n.g.op(type, n.op.constant.first ? [c, n.inputs[0]] : [n.inputs[0], c]);
      } else if (n.outLayout === 'nchwc' && n.inShapes.some((s) => s.join() !== n.outShape.join())) {
        // Broadcast over H and W in the blocked view [N, C/b, H, W, b], where numpy's rules hold.
        const views = n.inputs.map((x, i) => e.broadcastOperand(x, n.inShapes[i], n.outShape, 'nchwc', [-1]));
        const product = views.slice(1).reduce((a, t) => n.g.op(type, [a, t]), views[0]);
        pre = n.g.op('Reshape', [product, n.g.ints([-1, ...n.dims()])]);
      } else pre = n.inputs.slice(1).reduce((a, t) => n.g.op(type, [a, t]), n.inputs[0]);
      n.save('pre', pre);
      return n.save('y', onnxActivation(n, pre, n.op.act));
    },
    backward(n, dy) {
      const g = n.g;
      const op = n.op;
      const d = onnxActivationBackward(n, dy, n.saved('pre'), n.saved('y'), op.act);
      /** -a / b^2 = -(a / b) / b, from the forward quotient. */
      const quotientSlope = (b: string) => g.op('Neg', [g.op('Div', [n.saved('pre'), b])]);
      if (op.constant) {
        const c = n.saved('c');
        const first = op.constant.first;
        if (op.op === 'add') return [d];
        if (op.op === 'sub') return [first ? g.op('Neg', [d]) : d];
        if (op.op === 'mul') return [g.op('Mul', [d, c])];
        return [first ? n.perImage(d, quotientSlope(n.inputs[0])) : g.op('Div', [d, c])];
      }
      const out = n.outShape;
      const grads = n.inputs.map((x, i) => {
        if (op.op === 'add') return d;
        if (op.op === 'sub') return i === 0 ? d : g.op('Neg', [d]);
        const other = n.inputs[1 - i];
        const otherShape = n.inShapes[1 - i];
        if (op.op === 'mul') return n.e.rowsTimes(d, out, other, otherShape, n.outLayout);
        return i === 0 ? n.e.rowsTimes(d, out, g.op('Reciprocal', [other]), otherShape, n.outLayout) : n.perImage(d, quotientSlope(x));
      });
      return grads.map((gr, i) => n.e.unbroadcast(gr, out, n.inShapes[i], n.layouts[i]));
    },
  },
  samples: [
    {
      name: 'residual add, relu',
      op: { kind: 'binary', op: 'add', act: 'relu' },
      inputs: [
        [3, 3, 2],
        [3, 3, 2],
      ],
    },
    { name: 'sum of three', op: { kind: 'binary', op: 'add', act: 'linear' }, inputs: [[4], [4], [4]] },
    {
      name: 'difference',
      op: { kind: 'binary', op: 'sub', act: 'linear' },
      inputs: [
        [3, 3, 2],
        [3, 3, 2],
      ],
    },
    {
      name: 'product',
      op: { kind: 'binary', op: 'mul', act: 'linear' },
      inputs: [
        [3, 3, 2],
        [3, 3, 2],
      ],
    },
    {
      name: 'product broadcast per channel (SE block)',
      op: { kind: 'binary', op: 'mul', act: 'linear' },
      inputs: [
        [3, 3, 4],
        [1, 1, 4],
      ],
    },
    {
      name: 'quotient broadcast over the last axis (layer norm)',
      op: { kind: 'binary', op: 'div', act: 'linear' },
      inputs: [
        [4, 5],
        [4, 1],
      ],
      range: [0.5, 2],
    },
    {
      name: 'constant first, difference',
      op: { kind: 'binary', op: 'sub', act: 'linear', constant: { weights: w([2], 1), first: true } },
      inputs: [[3, 3, 2]],
    },
    {
      name: 'constant product per channel, relu6',
      op: { kind: 'binary', op: 'mul', act: 'relu6', constant: { weights: w([2], 2, 3), first: false } },
      inputs: [[3, 3, 2]],
    },
    {
      name: 'constant addend (position embedding)',
      op: { kind: 'binary', op: 'add', act: 'linear', constant: { weights: w([1, 4, 3], 3), first: false } },
      inputs: [[4, 3]],
    },
    {
      name: 'divided by a constant',
      op: { kind: 'binary', op: 'div', act: 'linear', constant: { weights: { data: Float32Array.of(2, 3, 4), shape: [3] }, first: false } },
      inputs: [[2, 3]],
    },
    {
      name: 'constant divided by the input',
      op: { kind: 'binary', op: 'div', act: 'linear', constant: { weights: { data: Float32Array.of(1.5), shape: [] }, first: true } },
      inputs: [[5]],
      range: [0.5, 2],
    },
  ],
};
