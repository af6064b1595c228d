import * as tf from '../../tf.js';
import type { OpDef } from './types.js';

/** a @ b over the last two axes of two values (attention: queries x keys, weights x values). */

/** The last two axes swapped, for a value of `rank` axes (batch included). */
const swapLast = (rank: number) => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];

export const matmul: OpDef<'matmul'> = {
  kind: 'matmul',
  shape(_op, [a, b]) {
    if (!b || a.length < 2 || a.length !== b.length || a[a.length - 1] !== b[b.length - 2] || a.slice(0, -2).some((d, i) => d !== b[i]))
      throw new Error(`cannot multiply [${a}] by [${b}] (same leading axes, [.., m, k] @ [.., k, n])`);
    return [...a.slice(0, -1), b[b.length - 1]];
  },
  tfjs:
    () =>
    ([a, b]) =>
      tf.matMul(a, b),
  onnx: {
    layout: 'plain',
    forward(n) {
      return n.g.op('MatMul', n.inputs);
    },
    backward(n, dy) {
      const g = n.g;
      const r = n.rank(0);
      // Per image: dA = dY @ B^T, dB = A^T @ dY, with each image's K rows against its own A and B.
      const rows = g.op('Reshape', [dy, g.op('Concat', [n.e.batch(), g.ints([-1, ...n.outShape])], { axis: 0 })]);
      const perImage = (t: string) => g.op('Unsqueeze', [g.op('Transpose', [t], { perm: swapLast(r) }), g.ints([1])]);
      const da = g.op('MatMul', [rows, perImage(n.inputs[1])]);
      const db = g.op('MatMul', [perImage(n.inputs[0]), rows]);
      return [g.op('Reshape', [da, g.ints([-1, ...n.inShapes[0]])]), g.op('Reshape', [db, g.ints([-1, ...n.inShapes[1]])])];
    },
  },
  samples: [
    {
      name: 'tokens x tokens',
      op: { kind: 'matmul' },
      inputs: [
        [4, 3],
        [3, 5],
      ],
    },
    {
      name: 'heads (rank 4)',
      op: { kind: 'matmul' },
      inputs: [
        [2, 3, 4],
        [2, 4, 3],
      ],
    },
  ],
};
