import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import { normAxis, sampleWeights as w, type OpDef, type Shape } from './types.js';

/** (x - mean) / sqrt(var + epsilon) over the axes from `axis` to the last, then * scale + bias. */

type LayerNorm = OpOf<'layerNorm'>;

const axesOf = (op: LayerNorm, x: Shape) => {
  const first = normAxis(op.axis, x.length + 1);
  return Array.from({ length: x.length + 1 - first }, (_, i) => first + i);
};

export const layerNorm: OpDef<'layerNorm'> = {
  kind: 'layerNorm',
  shape(op, [x]) {
    const axes = axesOf(op, x);
    const normalized = axes.map((a) => x[a - 1]);
    if (axes.length === 0 || axes[0] < 1) throw new Error(`axis ${op.axis} does not fit [${x}]`);
    for (const p of [op.scale, op.bias])
      if (p && p.data.length !== normalized.reduce((a, b) => a * b, 1))
        throw new Error(`scale / bias of ${p.data.length} values do not fit normalized axes [${normalized}]`);
    return x;
  },
  tfjs(op, b, [x]) {
    const axes = axesOf(op, x);
    const tail = axes.map((a) => x[a - 1]);
    const scale = op.scale && b.tensor({ data: op.scale.data, shape: tail });
    const bias = op.bias && b.tensor({ data: op.bias.data, shape: tail });
    return ([t]) => {
      const { mean, variance } = tf.moments(t, axes, true);
      let y = tf.div(tf.sub(t, mean), tf.sqrt(tf.add(variance, op.epsilon)));
      if (scale) y = tf.mul(y, scale);
      return bias ? tf.add(y, bias) : y;
    };
  },
  onnx: {
    layout: 'plain',
    forward(n) {
      const g = n.g;
      const x = n.inShapes[0];
      const tail = axesOf(n.op, x).map((a) => x[a - 1]);
      const d = g.op('Sub', [n.inputs[0], g.op('ReduceMean', [n.inputs[0]], { axes: axesOf(n.op, x), keepdims: 1 })]);
      const variance = g.op('ReduceMean', [g.op('Mul', [d, d])], { axes: axesOf(n.op, x), keepdims: 1 });
      const inv = n.save('inv', g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, g.scalar(n.op.epsilon)])])]));
      const xhat = n.save('xhat', g.op('Mul', [d, inv]));
      let y = xhat;
      if (n.op.scale) y = g.op('Mul', [y, n.save('scale', g.floats(n.op.scale.data, tail))]);
      if (n.op.bias) y = g.op('Add', [y, g.floats(n.op.bias.data, tail)]);
      return y;
    },
    backward(n, dy) {
      // dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale, means over the normalized axes.
      const G = n.g;
      const x = n.inShapes[0];
      const axes = axesOf(n.op, x);
      const reduced = x.map((d, i) => (axes.includes(i + 1) ? 1 : d));
      const gr = n.op.scale ? G.op('Mul', [dy, n.saved('scale')]) : dy;
      const xhat = n.saved('xhat');
      const mean = (t: string) => G.op('ReduceMean', [t], { axes, keepdims: 1 });
      const m2 = mean(n.perImage(gr, xhat));
      const t = G.op('Sub', [G.op('Sub', [gr, mean(gr)]), n.e.rowsTimes(m2, reduced, xhat, x, 'plain')]);
      return [n.perImage(t, n.saved('inv'), reduced)];
    },
  },
  samples: [
    {
      name: 'tokens, last axis, scale and bias',
      op: { kind: 'layerNorm', axis: -1, epsilon: 1e-5, scale: w([5], 1), bias: w([5], 2) },
      inputs: [[3, 5]],
    },
    { name: 'channels last of an image, no scale', op: { kind: 'layerNorm', axis: -1, epsilon: 1e-6 }, inputs: [[3, 3, 4]] },
    { name: 'last two axes', op: { kind: 'layerNorm', axis: 2, epsilon: 1e-5, scale: w([12], 3) }, inputs: [[2, 3, 4]] },
  ],
};
