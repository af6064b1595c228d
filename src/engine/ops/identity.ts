import type { OpDef } from './types.js';

/** The input unchanged (dropout, quantise / dequantise, ...). */
export const identity: OpDef<'identity'> = {
  kind: 'identity',
  shape: (_op, [x]) => x,
  tfjs:
    () =>
    ([x]) =>
      x,
  onnx: { layout: 'any', blocked: () => true, forward: (n) => n.inputs[0], backward: (_n, dy) => [dy] },
  samples: [{ name: 'image', op: { kind: 'identity' }, inputs: [[3, 3, 2]] }],
};
