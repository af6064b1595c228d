import type { Activation } from '../net.js';
import { ACTIVATIONS, activationName, finiteEverywhere, onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import type { OpDef, Sample } from './types.js';

/** One element-wise activation as a node of its own (every activation is a sample). */
export const act: OpDef<'act'> = {
  kind: 'act',
  shape: (_op, [x]) => x,
  tfjs(op) {
    const f = tfjsActivation(op.act);
    return ([x]) => f(x);
  },
  onnx: {
    layout: 'any',
    blocked: (op, _xs, padded) => op.act !== 'softmax' && (!padded || finiteEverywhere(op.act)),
    forward(n) {
      n.save('x', n.inputs[0]);
      return n.save('y', onnxActivation(n, n.inputs[0], n.op.act));
    },
    backward(n, dy) {
      return [onnxActivationBackward(n, dy, n.saved('x'), n.saved('y'), n.op.act)];
    },
  },
  samples: ACTIVATIONS.flatMap(([a, range]): Sample<{ kind: 'act'; act: Activation }>[] => [
    { name: activationName(a), op: { kind: 'act', act: a }, inputs: [[5, 4, 3]], range },
    { name: `${activationName(a)} (rank 2)`, op: { kind: 'act', act: a }, inputs: [[7]], range },
  ]),
};
