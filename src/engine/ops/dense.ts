import * as tf from '../../tf.js';
import { onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import { sampleWeights as w, type OpDef } from './types.js';

/** x [..., in] @ kernel [in, out] (+ bias) on the last axis, with a fused activation. */
export const dense: OpDef<'dense'> = {
  kind: 'dense',
  shape(op, [x]) {
    const [din, dout] = op.kernel.shape;
    if (x[x.length - 1] !== din) throw new Error(`a [${din}, ${dout}] kernel does not fit inputs [${x}] (last axis ${din} expected)`);
    return [...x.slice(0, -1), dout];
  },
  tfjs(op, b) {
    const k = b.tensor(op.kernel) as tf.Tensor2D;
    const bias = op.bias && b.tensor(op.bias);
    const act = tfjsActivation(op.act);
    const [din, dout] = op.kernel.shape;
    return ([x]) => {
      const flat = x.rank === 2 ? (x as tf.Tensor2D) : x.reshape([-1, din]);
      let y: tf.Tensor = tf.matMul(flat as tf.Tensor2D, k);
      if (bias) y = tf.add(y, bias);
      return act(x.rank === 2 ? y : y.reshape([...x.shape.slice(0, -1), dout]));
    };
  },
  onnx: {
    layout: 'plain',
    forward(n) {
      const { kernel, bias, act } = n.op;
      const mm = n.g.op('MatMul', [n.inputs[0], n.save('w', n.g.floats(kernel.data, kernel.shape))]);
      const pre = n.save('pre', bias ? n.g.op('Add', [mm, n.g.floats(bias.data, bias.shape)]) : mm);
      return n.save('y', onnxActivation(n, pre, act));
    },
    backward(n, dy) {
      const g = n.g;
      const d = onnxActivationBackward(n, dy, n.saved('pre'), n.saved('y'), n.op.act);
      const dout = n.op.kernel.shape[1];
      // dx = d @ kernel^T as Gemm on the forward's own kernel (transB): no transposed copy in the graph,
      // which for VGG's first dense layer alone would be 411 MB.
      const rows = n.inShapes[0].length === 1 ? d : g.op('Reshape', [d, g.ints([-1, dout])]);
      const dx = g.op('Gemm', [rows, n.saved('w')], { transB: 1 });
      return [n.inShapes[0].length === 1 ? dx : g.op('Reshape', [dx, g.ints([-1, ...n.inShapes[0]])])];
    },
  },
  samples: [
    { name: 'rank 2, bias, relu', op: { kind: 'dense', kernel: w([6, 4], 1), bias: w([4], 2), act: 'relu' }, inputs: [[6]] },
    { name: 'tokens (rank 3), gelu', op: { kind: 'dense', kernel: w([5, 3], 3), bias: w([3], 4), act: 'gelu' }, inputs: [[4, 5]] },
    { name: 'rank 4 (channels last), linear', op: { kind: 'dense', kernel: w([3, 2], 5), act: 'linear' }, inputs: [[3, 2, 3]] },
  ],
};
