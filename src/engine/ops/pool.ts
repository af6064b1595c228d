import * as tf from '../../tf.js';
import type { OpOf } from '../net.js';
import { maxPoolInputGrad } from '../tfjs/inputgrad.js';
import type { OnnxNode } from '../onnx/emit.js';
import { NCHWC_DOMAIN } from '../onnx/builder.js';
import { blockableChannels } from '../onnx/nchwc.js';
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
 * dx of max pooling, as PyTorch computes it: ONNX Runtime's MaxPool gives each window's argmax (the
 * first maximum in row-major order, as PyTorch and TF pick), and every backward row's dy is added at
 * those positions (ScatterElements, reduction add: overlapping windows can share an argmax). One argmax,
 * not every tie: ties are structural after a max pooling (GoogLeNet pools pooled maps), and crediting
 * each copy would count one input several times. Cheaper on GoogLeNet than building the mask per
 * window offset from Equal / Pad / Sum (docs/speed.md). `x`: the input, NCHW (MaxPool's indices are NCHW positions;
 * on the blocked view [N, C/b, H, W, b] as a 3-D pooling they are slower: docs/speed.md).
 */
function maxGradient(n: OnnxNode<Pool>, dy: string, x: string): string {
  const g = n.g;
  const [H, W, C] = n.inShapes[0];
  const [ho, wo] = n.outShape;
  const { pads } = geometry(n.op, n.inShapes[0]);
  const argmax = g.fresh('argmax');
  g.opMulti('MaxPool', [x], [g.fresh('pooled'), argmax], {
    kernel_shape: n.op.size,
    strides: n.op.strides,
    pads: onnxPads(pads),
  });
  // ONNX's indices run over the whole batch: image i's start at i * C*H*W (subtracted: int64 Mod is
  // slower, docs/speed.md).
  const image = C * H * W;
  const limit = g.op('Squeeze', [g.op('Mul', [n.e.batch(), g.ints([image])])]);
  const starts = g.op('Range', [g.op('Squeeze', [g.ints([0])]), limit, g.op('Squeeze', [g.ints([image])])]);
  const inImage = g.op('Sub', [g.op('Reshape', [argmax, g.ints([0, 1, C * ho * wo])]), g.op('Reshape', [starts, g.ints([-1, 1, 1])])]);
  const rows = g.op('Reshape', [dy, g.op('Concat', [n.e.batch(), g.ints([-1, C * ho * wo])], { axis: 0 })]);
  const rowsShape = g.op('Shape', [rows]);
  const zeros = g.op('ConstantOfShape', [
    g.op('Concat', [g.op('Slice', [rowsShape, g.ints([0]), g.ints([2])]), g.ints([image])], { axis: 0 }),
  ]);
  const dx = g.op('ScatterElements', [zeros, g.op('Expand', [inImage, rowsShape]), rows], { axis: 2, reduction: 'add' });
  return g.op('Reshape', [dx, g.ints([-1, C, H, W])]);
}

/**
 * dx of max pooling from ops the WebGPU provider has (it has no MaxPool Indices output and runs
 * int64 index arithmetic on the CPU): the same first maximum per window in row-major order, found
 * by comparing each window offset's strided view of the -infinity-padded input with the pooled value
 * (offsets in row-major order, each taking the windows no earlier offset took); dy times those masks
 * goes back to its offsets through one grouped ConvTranspose whose one-hot filters place each offset.
 */
function maxGradientByMasks(n: OnnxNode<Pool>, dy: string): string {
  const g = n.g;
  const op = n.op;
  const C = n.inShapes[0][2];
  const [ho, wo] = n.outShape;
  const [k0, k1] = op.size;
  const [s0, s1] = op.strides;
  const { pads } = geometry(op, n.inShapes[0]);
  const padded = pads.some(([a, b]) => a > 0 || b > 0)
    ? g.op('Pad', [n.saved('x'), g.ints([0, 0, pads[0][0], pads[1][0], 0, 0, pads[0][1], pads[1][1]]), g.scalar(-Infinity)])
    : n.saved('x');
  const pooled = n.saved('y');
  const masks: string[] = [];
  // 0/1 floats: the provider has Equal and Cast but no boolean Or.
  let taken = '';
  for (let i = 0; i < k0; i++)
    for (let j = 0; j < k1; j++) {
      const view = g.op('Slice', [
        padded,
        g.ints([i, j]),
        g.ints([i + s0 * (ho - 1) + 1, j + s1 * (wo - 1) + 1]),
        g.ints([2, 3]),
        g.ints([s0, s1]),
      ]);
      const equal = g.op('Cast', [g.op('Equal', [view, pooled])], { to: 1 });
      const first = taken ? g.op('Mul', [equal, g.op('Sub', [g.scalar(1), taken])]) : equal;
      taken = taken ? g.op('Add', [taken, first]) : first;
      masks.push(g.op('Unsqueeze', [first, g.ints([2])]));
    }
  const T = k0 * k1;
  // [N, 1, C, T, ho, wo]: each image's masks serve its K backward rows.
  const mask = g.op('Unsqueeze', [g.op('Concat', masks, { axis: 2 }), g.ints([1])]);
  const rows = g.op('Reshape', [dy, g.op('Concat', [n.e.batch(), g.ints([-1, C, 1, ho, wo])], { axis: 0 })]);
  const routed = g.op('Reshape', [g.op('Mul', [rows, mask]), g.ints([-1, C * T, ho, wo])]);
  const place = new Float32Array(C * T * T);
  for (let c = 0; c < C; c++) for (let t = 0; t < T; t++) place[(c * T + t) * T + t] = 1;
  return spreadOverWindows(n, routed, g.floats(place, [C * T, 1, k0, k1]), C * T);
}

/**
 * The transposed pooling window: rows [N*K, channels, ho, wo] spread back over the input's [H, W]
 * through `filter` ([channels, 1, kh, kw], one group per input channel), with the output padding that
 * gives the input's size back.
 */
function spreadOverWindows(n: OnnxNode<Pool>, rows: string, filter: string, channels: number): string {
  const op = n.op;
  const { pads } = geometry(op, n.inShapes[0]);
  const outputPadding = [0, 1].map((a) => n.inShapes[0][a] - (op.strides[a] * (n.outShape[a] - 1) + op.size[a] - pads[a][0] - pads[a][1]));
  return n.e.convTranspose(rows, filter, [channels, ...n.outShape.slice(0, 2)], {
    kernel_shape: op.size,
    strides: op.strides,
    pads: onnxPads(pads),
    output_padding: outputPadding,
    group: n.inShapes[0][2],
  });
}

/** dx of average pooling: dy divided by each window's count, spread back over the window (a transposed box filter). */
function averageGradient(n: OnnxNode<Pool>, dy: string): string {
  const g = n.g;
  const op = n.op;
  const C = n.inShapes[0][2];
  const [ho, wo] = n.outShape;
  const k = op.size[0] * op.size[1];
  const scaled = fullWindows(op, n.inShapes[0])
    ? dy
    : g.op('Mul', [
        dy,
        g.floats(
          inverseCounts(op, n.inShapes[0]).map((v) => v * k),
          [1, 1, ho, wo],
        ),
      ]);
  const [H, W] = n.inShapes[0];
  // Each input in exactly one window: windows side by side (stride = size), or one window over the axis.
  const tiled = [0, 1].every((a) => [H, W][a] === [ho, wo][a] * op.size[a] && (op.strides[a] === op.size[a] || [ho, wo][a] === 1));
  if (tiled && fullWindows(op, n.inShapes[0])) {
    // Windows that tile the input exactly (global pooling among them): each input's share of its one
    // window is dy / k, an upsampling rather than a depthwise ConvTranspose (ONNX Runtime runs that as
    // one small product per channel: bench/results/vjp-profile.md).
    const share = g.op('Mul', [dy, g.scalar(1 / k)]);
    if (ho === 1 && wo === 1) return g.op('Expand', [share, g.ints([1, C, H, W])]);
    return g.op('Resize', [share, '', g.floats([1, 1, op.size[0], op.size[1]], [4])], {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  }
  return spreadOverWindows(n, scaled, g.floats(new Float32Array(C * k).fill(1 / k), [C, 1, op.size[0], op.size[1]]), C);
}

/** A sample's square k x k pooling of stride s with explicit pads, `before` and `after` on both axes. */
const square = (mode: Pool['mode'], k: number, s: number, before: number, after: number, countIncludePad?: boolean): Pool => ({
  kind: 'pool',
  mode,
  size: [k, k],
  strides: [s, s],
  padding: [
    [before, after],
    [before, after],
  ],
  ...(countIncludePad ? { countIncludePad } : {}),
});

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
    const correction = fullWindows(op, shape)
      ? null
      : b.tensor({ data: inverseCounts(op, shape).map((v) => v * k), shape: [1, out[0], out[1], 1] });
    return ([x]) => {
      const y = tf.avgPool(x.pad([[0, 0], pads[0], pads[1], [0, 0]]) as tf.Tensor4D, op.size, op.strides, 'valid');
      return correction ? tf.mul(y, correction) : y;
    };
  },
  onnx: {
    // Max pooling of channels ONNX Runtime can block: its blocked kernel, so that a network of
    // convolutions and max pools (GoogLeNet) stays blocked between them.
    layout: (op, [x], block) => (op.mode === 'max' && blockableChannels(x[2], block) ? 'nchwc' : 'nchw'),
    forward(n) {
      const op = n.op;
      const { pads } = geometry(op, n.inShapes[0]);
      const attrs = { kernel_shape: op.size, strides: op.strides, pads: onnxPads(pads) };
      n.save('x', n.inputs[0]);
      if (n.layouts[0] === 'nchwc') return n.save('y', n.g.opIn(NCHWC_DOMAIN, 'MaxPool', [n.inputs[0]], attrs));
      if (op.mode === 'avg')
        return n.g.op('AveragePool', [n.inputs[0]], { ...attrs, count_include_pad: fullWindows(op, n.inShapes[0]) ? 1 : 0 });
      return n.save('y', n.g.op('MaxPool', [n.inputs[0]], attrs));
    },
    backward(n, dy) {
      if (n.op.mode === 'avg') return [averageGradient(n, dy)];
      if (n.e.target === 'webgpu') return [maxGradientByMasks(n, dy)];
      if (n.layouts[0] !== 'nchwc') return [maxGradient(n, dy, n.saved('x'))];
      const x = n.e.convert(n.saved('x'), 'nchwc', 'nchw', n.inShapes[0]);
      return [n.throughNchw(dy, (rows) => maxGradient(n, rows, x))];
    },
  },
  samples: [
    { name: 'avg 2x2 valid', op: { kind: 'pool', mode: 'avg', size: [2, 2], strides: [2, 2], padding: 'valid' }, inputs: [[6, 6, 3]] },
    {
      name: 'avg 2x2 valid, a row left over',
      op: { kind: 'pool', mode: 'avg', size: [2, 2], strides: [2, 2], padding: 'valid' },
      inputs: [[5, 6, 3]],
    },
    {
      name: 'avg global (window = input)',
      op: { kind: 'pool', mode: 'avg', size: [2, 3], strides: [1, 1], padding: 'valid' },
      inputs: [[2, 3, 4]],
    },
    {
      name: 'avg 3x3/2 same (TF: pads not counted)',
      op: { kind: 'pool', mode: 'avg', size: [3, 3], strides: [2, 2], padding: 'same' },
      inputs: [[7, 6, 2]],
    },
    {
      name: 'avg 3x3/1 pad 1, pads counted',
      op: square('avg', 3, 1, 1, 1, true),
      inputs: [[5, 5, 2]],
    },
    {
      name: 'avg 3x3/1 pad 1, pads not counted',
      op: square('avg', 3, 1, 1, 1),
      inputs: [[5, 5, 2]],
    },
    { name: 'max 2x2 same', op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [2, 2], padding: 'same' }, inputs: [[5, 5, 3]] },
    {
      name: 'max 3x3/2 same (overlapping)',
      op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'same' },
      inputs: [[8, 8, 3]],
    },
    { name: 'max 3x3/1 same', op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [1, 1], padding: 'same' }, inputs: [[5, 5, 2]] },
    { name: 'max 2x2/1 valid', op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [1, 1], padding: 'valid' }, inputs: [[5, 5, 2]] },
    {
      name: 'max 3x3/2 valid (unused last row)',
      op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'valid' },
      inputs: [[8, 8, 2]],
    },
    {
      name: 'max 3x3/2, ceil-mode end pad, 12 channels (blocked, channels padded)',
      op: square('max', 3, 2, 0, 1),
      inputs: [[7, 6, 12]],
      check: true,
    },
    {
      name: 'max 3x3/1 pad 1, 16 channels (blocked)',
      op: square('max', 3, 1, 1, 1),
      inputs: [[5, 4, 16]],
    },
    {
      name: 'max 3x3/2 pad 1 (ResNet)',
      op: square('max', 3, 2, 1, 1),
      inputs: [[8, 8, 2]],
    },
    {
      name: 'max 3x3/2 ceil mode (extra end pad)',
      op: square('max', 3, 2, 0, 1),
      inputs: [[8, 8, 2]],
    },
  ],
};
