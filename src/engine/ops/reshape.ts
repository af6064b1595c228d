import { size, type OpDef } from './types.js';

/** A new shape for each image (the batch axis stays); -1 once for "the rest". */
export const reshape: OpDef<'reshape'> = {
  kind: 'reshape',
  shape(op, [x]) {
    const total = size(x);
    const known = op.shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const free = op.shape.filter((d) => d === -1).length;
    const out = op.shape.map((d) => (d === -1 ? total / known : d));
    if (free > 1 || out.some((d) => !Number.isInteger(d) || d < 1) || size(out) !== total)
      throw new Error(`cannot reshape [${x}] to [${op.shape}]`);
    return out;
  },
  tfjs:
    (op) =>
    ([x]) =>
      x.reshape([x.shape[0], ...op.shape]),
  onnx: {
    layout: 'plain',
    forward: (n) => n.g.op('Reshape', [n.inputs[0], n.g.ints([0, ...n.op.shape])]),
    backward: (n, dy) => [n.g.op('Reshape', [dy, n.g.ints([-1, ...n.inShapes[0]])])],
  },
  samples: [
    { name: 'flatten an image', op: { kind: 'reshape', shape: [-1] }, inputs: [[3, 3, 2]] },
    { name: 'image to tokens', op: { kind: 'reshape', shape: [9, 2] }, inputs: [[3, 3, 2]] },
    { name: 'rank 2 to an image', op: { kind: 'reshape', shape: [2, -1, 3] }, inputs: [[12]] },
  ],
};
