import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import { maxPoolInputGrad } from '../inputgrad.js';
import type { OnnxNode } from '../onnx/emit.js';
import { onnxPads, windowGeometry } from './geometry.js';
import type { OpDef } from './types.js';

/**
 * Max and average pooling (NHWC). Max pooling pads with -infinity. Average pooling divides each window
 * by its size when padding counts (countIncludePad, explicit pads) or by the inputs it covers ('same'
 * and countIncludePad false), as ONNX's AveragePool and TensorFlow do.
 */

type Pool = OpOf<'pool'>;

const geometry = (op: Pool, x: number[]) => windowGeometry(x, op.size, op.strides, op.padding);

/** Whether average pooling divides by the window size everywhere (no padding, or padding that counts). */
function fullWindows(op: Pool, x: number[]): boolean {
  const { pads } = geometry(op, x);
  return (op.countIncludePad ?? false) || pads.every(([a, b]) => a === 0 && b === 0);
}

/** Per output position, 1 / (inputs the window covers), [ho, wo]. */
function inverseCounts(op: Pool, x: number[]): Float32Array {
  const { out, pads } = geometry(op, x);
  const covered = (a: 0 | 1, o: number) => {
    const start = o * op.strides[a] - pads[a][0];
    return Math.min(start + op.size[a], x[a]) - Math.max(start, 0);
  };
  const inv = new Float32Array(out[0] * out[1]);
  for (let i = 0; i < out[0]; i++) for (let j = 0; j < out[1]; j++) inv[i * out[1] + j] = 1 / (covered(0, i) * covered(1, j));
  return inv;
}

/**
 * dx of max pooling: for each of the k x k window offsets in row-major order, the input at that offset
 * receives the window's dy if it is the window's FIRST maximum (as PyTorch and TF pick one argmax); the
 * strided contributions are zero-dilated, shifted into place and summed, then the padding is cut off.
 * One argmax, not every tie: ties are structural after a max pooling (GoogLeNet pools pooled maps:
 * overlapping windows repeat a value), and crediting each copy would count one input several times.
 */
function maxGradient(n: OnnxNode<Pool>, dy: string): string {
  const g = n.g;
  const [kh, kw] = n.op.size;
  const [sh, sw] = n.op.strides;
  const [H, W, C] = n.inShapes[0];
  const [ho, wo] = n.outShape;
  const { pads } = geometry(n.op, n.inShapes[0]);
  const [pt, pl] = [pads[0][0], pads[1][0]];
  // The input as the windows see it, padded with a value no max can equal (cut where 'valid' leaves rows unused).
  const [hp, wp] = [(ho - 1) * sh + kh, (wo - 1) * sw + kw];
  let xp = g.op('Pad', [n.saved('x'), g.ints([0, 0, pt, pl, 0, 0, Math.max(0, hp - H - pt), Math.max(0, wp - W - pl)]), g.scalar(-3.4e38)]);
  if (H + pt > hp || W + pl > wp) xp = g.op('Slice', [xp, g.ints([0, 0]), g.ints([hp, wp]), g.ints([2, 3])]);
  const [hc, wc] = [ho * sh + kh, wo * sw + kw];
  const parts: string[] = [];
  let taken: string | undefined; // 1 where an earlier offset already held the window's max
  for (let a = 0; a < kh; a++)
    for (let b = 0; b < kw; b++) {
      const at = g.op('Slice', [xp, g.ints([a, b]), g.ints([a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1]), g.ints([2, 3]), g.ints([sh, sw])]);
      const isMax = g.op('Cast', [g.op('Equal', [at, n.saved('y')])], { to: 1 });
      const first = taken ? g.op('Mul', [isMax, g.op('Sub', [g.scalar(1), taken])]) : isMax;
      if (a < kh - 1 || b < kw - 1) taken = taken ? g.op('Add', [taken, first]) : first;
      const share = n.perImage(dy, first);
      // Stride 1 (GoogLeNet's 3x3 branch pools): nothing to dilate.
      const flat =
        sh === 1 && sw === 1
          ? share
          : g.op('Reshape', [g.op('Pad', [g.op('Reshape', [share, g.ints([0, C, ho, 1, wo, 1])]), g.ints([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1])]), g.ints([0, C, ho * sh, wo * sw])]);
      parts.push(g.op('Pad', [flat, g.ints([0, 0, a, b, 0, 0, hc - a - ho * sh, wc - b - wo * sw])]));
    }
  return g.op('Slice', [g.op('Sum', parts), g.ints([pt, pl]), g.ints([pt + H, pl + W]), g.ints([2, 3])]);
}

/** dx of average pooling: dy divided by each window's count, spread back over the window (a transposed box filter). */
function averageGradient(n: OnnxNode<Pool>, dy: string): string {
  const g = n.g;
  const op = n.op;
  const C = n.inShapes[0][2];
  const [ho, wo] = n.outShape;
  const { pads } = geometry(op, n.inShapes[0]);
  const k = op.size[0] * op.size[1];
  const scaled = fullWindows(op, n.inShapes[0]) ? dy : g.op('Mul', [dy, g.floats(inverseCounts(op, n.inShapes[0]).map((v) => v * k), [1, 1, ho, wo])]);
  const box = g.floats(new Float32Array(C * k).fill(1 / k), [C, 1, op.size[0], op.size[1]]);
  const outputPadding = [0, 1].map((a) => n.inShapes[0][a] - (op.strides[a] * (n.outShape[a] - 1) + op.size[a] - pads[a][0] - pads[a][1]));
  return g.op('ConvTranspose', [scaled, box], { kernel_shape: op.size, strides: op.strides, pads: onnxPads(pads), output_padding: outputPadding, group: C });
}

export const pool: OpDef<'pool'> = {
  kind: 'pool',
  shape(op, [x]) {
    if (x.length !== 3) throw new Error(`pooling takes [H, W, C] images, got [${x}]`);
    const { out } = geometry(op, x);
    if (out[0] < 1 || out[1] < 1) throw new Error(`a ${op.size.join('x')} window does not fit a ${x[0]}x${x[1]} input`);
    return [out[0], out[1], x[2]];
  },
  tfjs(op, b, [shape]) {
    if (op.mode === 'max') return ([x]) => maxPoolInputGrad(x as tf.Tensor4D, op.size, op.strides, op.padding);
    // Padded average pooling: zeros around a 'valid' pooling, then each window rescaled by its count.
    // (TF.js's own AvgPoolGrad divides by the full window at 'same' borders: wrong.)
    const { pads, out } = geometry(op, shape);
    if (pads.every(([a, b]) => a === 0 && b === 0)) return ([x]) => tf.avgPool(x as tf.Tensor4D, op.size, op.strides, 'valid');
    const k = op.size[0] * op.size[1];
    const correction = fullWindows(op, shape) ? null : b.tensor({ data: inverseCounts(op, shape).map((v) => v * k), shape: [1, out[0], out[1], 1] });
    return ([x]) => {
      const y = tf.avgPool(x.pad([[0, 0], pads[0], pads[1], [0, 0]]) as tf.Tensor4D, op.size, op.strides, 'valid');
      return correction ? tf.mul(y, correction) : y;
    };
  },
  onnx: {
    layout: 'nchw',
    forward(n) {
      const op = n.op;
      const { pads } = geometry(op, n.inShapes[0]);
      const attrs = { kernel_shape: op.size, strides: op.strides, pads: onnxPads(pads) };
      n.save('x', n.inputs[0]);
      if (op.mode === 'avg') return n.g.op('AveragePool', [n.inputs[0]], { ...attrs, count_include_pad: fullWindows(op, n.inShapes[0]) ? 1 : 0 });
      return n.save('y', n.g.op('MaxPool', [n.inputs[0]], attrs));
    },
    backward(n, dy) {
      return [n.op.mode === 'avg' ? averageGradient(n, dy) : maxGradient(n, dy)];
    },
  },
  samples: [
    { name: 'avg 2x2 valid', op: { kind: 'pool', mode: 'avg', size: [2, 2], strides: [2, 2], padding: 'valid' }, inputs: [[6, 6, 3]] },
    { name: 'avg 3x3/2 same (TF: pads not counted)', op: { kind: 'pool', mode: 'avg', size: [3, 3], strides: [2, 2], padding: 'same' }, inputs: [[7, 6, 2]] },
    { name: 'avg 3x3/1 pad 1, pads counted', op: { kind: 'pool', mode: 'avg', size: [3, 3], strides: [1, 1], padding: [[1, 1], [1, 1]], countIncludePad: true }, inputs: [[5, 5, 2]] },
    { name: 'avg 3x3/1 pad 1, pads not counted', op: { kind: 'pool', mode: 'avg', size: [3, 3], strides: [1, 1], padding: [[1, 1], [1, 1]] }, inputs: [[5, 5, 2]] },
    { name: 'max 2x2 same', op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [2, 2], padding: 'same' }, inputs: [[5, 5, 3]] },
    { name: 'max 3x3/2 same (overlapping)', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'same' }, inputs: [[8, 8, 3]] },
    { name: 'max 3x3/1 same', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [1, 1], padding: 'same' }, inputs: [[5, 5, 2]] },
    { name: 'max 2x2/1 valid', op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [1, 1], padding: 'valid' }, inputs: [[5, 5, 2]] },
    { name: 'max 3x3/2 valid (unused last row)', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'valid' }, inputs: [[8, 8, 2]] },
    { name: 'max 3x3/2 pad 1 (ResNet)', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: [[1, 1], [1, 1]] }, inputs: [[8, 8, 2]] },
    { name: 'max 3x3/2 ceil mode (extra end pad)', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: [[0, 1], [0, 1]] }, inputs: [[8, 8, 2]] },
  ],
};
