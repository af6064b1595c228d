import * as tf from '@tensorflow/tfjs';
import { transposeWeights, type Activation, type Net, type NetNode, type Weights } from '../net.js';
import { netToTfGraph } from '../tfjsNet.js';
import { OnnxGraph } from './builder.js';

/**
 * Exports a Net to ONNX: a forward model (x -> logits) and a vector-Jacobian model
 * (x, dy -> logits, dx = J^T dy) whose backward half is built here op by op, because ONNX Runtime has
 * no autodiff. Inputs and dx are NHWC like the rest of the project; inside, 4-D tensors are NCHW.
 */

/** A Net the exporter cannot express exactly; the caller keeps the TF.js engine. */
export class OnnxUnsupported extends Error {
  override name = 'OnnxUnsupported';
}

const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];
const INT64_MAX = 9007199254740991; // the largest integer a JS number holds; ONNX clamps slice ends anyway

/** Output shape (without batch, NHWC) of every node, from one TF.js forward pass on a 1-image batch. */
export function inferShapes(net: Net, inputShape: number[]): Map<string, number[]> {
  const g = netToTfGraph(net);
  const shapes = new Map<string, number[]>([[net.input, inputShape]]);
  try {
    tf.tidy(() => {
      const values = new Map<string, tf.Tensor>([[net.input, tf.zeros([1, ...inputShape])]]);
      for (const s of g.steps) {
        const y = s.fn(s.inputs.map((n) => values.get(n)!));
        values.set(s.name, y);
        shapes.set(s.name, y.shape.slice(1));
      }
    });
  } finally {
    tf.dispose(g.owned);
  }
  return shapes;
}

/** TF's SAME/VALID padding as explicit [before, after] per spatial axis. */
function explicitPads(inHW: number[], outHW: number[], k: number[], s: number[], padding: 'same' | 'valid'): [number, number][] {
  return [0, 1].map((a) => {
    if (padding === 'valid') return [0, 0] as [number, number];
    const total = Math.max((outHW[a] - 1) * s[a] + k[a] - inHW[a], 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)] as [number, number];
  });
}

/** Row-major transpose of a weight array, as a flat array. */
const transposed = (w: Weights, perm: number[]): Float32Array => transposeWeights(w, perm).data;

interface Ctx {
  g: OnnxGraph;
  shapes: Map<string, number[]>;
  /** ONNX value of each Net value (4-D ones in NCHW). */
  val: Map<string, string>;
  /** ONNX values saved for the backward pass (e.g. the activation output), by node name. */
  saved: Map<string, Record<string, string>>;
  /** The batch size N as an int64 [1] tensor (made on first use). */
  batch?: string;
}

const is4d = (shape: number[]) => shape.length === 3; // shapes exclude the batch axis

/** A constant broadcast against an NHWC tensor of `rank` (batch included), laid out for its ONNX value. */
function constFor(ctx: Ctx, w: Weights, rank: number): string {
  if (rank !== 4 || w.shape.length === 0) return ctx.g.floats(w.data, w.shape);
  const s4 = [...new Array(4 - w.shape.length).fill(1), ...w.shape];
  return ctx.g.floats(transposed({ data: w.data, shape: s4 }, NHWC_TO_NCHW), NHWC_TO_NCHW.map((p) => s4[p]));
}

function activation(ctx: Ctx, x: string, a: Activation): string {
  const g = ctx.g;
  if (typeof a === 'object') return g.op('LeakyRelu', [x], { alpha: a.leaky });
  switch (a) {
    case 'linear':
      return x;
    case 'relu':
      return g.op('Relu', [x]);
    case 'relu6':
      return g.op('Clip', [x, g.scalar(0), g.scalar(6)]);
    case 'relu1':
      return g.op('Clip', [x, g.scalar(-1), g.scalar(1)]);
    case 'sigmoid':
      return g.op('Sigmoid', [x]);
    case 'tanh':
      return g.op('Tanh', [x]);
    case 'elu':
      return g.op('Elu', [x], { alpha: 1 });
    case 'softmax':
      return g.op('Softmax', [x], { axis: -1 });
    case 'log':
      return g.op('Log', [g.op('Max', [x, g.scalar(1e-30)])]);
  }
}

/** Dimensions of a Net value's ONNX tensor without the batch axis (4-D ones are NCHW). */
const onnxDims = (shape: number[]) => (shape.length === 3 ? [shape[2], shape[0], shape[1]] : shape);

/**
 * g * f where g holds the backward rows [N*K, ...] (K cotangents per image, image-major) and f a
 * forward-pass quantity [N, ...] of the same value: each image's factor serves its K rows, so the
 * forward pass and every mask are computed once per image, not once per row.
 */
function perImage(ctx: Ctx, g: string, f: string, shape: number[]): string {
  const G = ctx.g;
  const size = shape.reduce((a, b) => a * b, 1);
  ctx.batch ??= G.op('Slice', [G.op('Shape', ['x']), G.ints([0]), G.ints([1])], {}, 'batch');
  const rows = G.op('Reshape', [g, G.op('Concat', [ctx.batch, G.ints([-1, size])], { axis: 0 })]);
  const product = G.op('Mul', [rows, G.op('Reshape', [f, G.ints([0, 1, size])])]);
  return G.op('Reshape', [product, G.ints([-1, ...onnxDims(shape)])]);
}

/**
 * dy -> dx through an activation whose output (a value of `shape`) is y. Masks read the OUTPUT
 * (0 < y < 6 exactly when 0 < x < 6, etc.), so the pre-activation never has to be kept and ONNX
 * Runtime can fuse each activation into its conv. Only 'log' needs its input x.
 */
function activationBackward(ctx: Ctx, dy: string, x: string, y: string, a: Activation, shape: number[]): string {
  const g = ctx.g;
  const times = (f: string) => perImage(ctx, dy, f, shape);
  const mask = (m: string) => times(g.op('Cast', [m], { to: 1 }));
  const zero = () => g.scalar(0);
  if (typeof a === 'object') return times(g.op('Where', [g.op('Greater', [y, zero()]), g.scalar(1), g.scalar(a.leaky)]));
  switch (a) {
    case 'linear':
      return dy;
    case 'relu':
      return mask(g.op('Greater', [y, zero()]));
    case 'relu6':
      return mask(g.op('And', [g.op('Greater', [y, zero()]), g.op('Less', [y, g.scalar(6)])]));
    case 'relu1':
      return mask(g.op('And', [g.op('Greater', [y, g.scalar(-1)]), g.op('Less', [y, g.scalar(1)])]));
    case 'sigmoid':
      return times(g.op('Mul', [y, g.op('Sub', [g.scalar(1), y])]));
    case 'tanh':
      return times(g.op('Sub', [g.scalar(1), g.op('Mul', [y, y])]));
    case 'elu':
      return times(g.op('Where', [g.op('Greater', [y, zero()]), g.scalar(1), g.op('Add', [y, g.scalar(1)])]));
    case 'softmax': {
      const dot = g.op('ReduceSum', [perImage(ctx, dy, y, shape), g.ints([-1])], { keepdims: 1 });
      return perImage(ctx, g.op('Sub', [dy, dot]), y, shape);
    }
    case 'log': {
      const inRange = g.op('Cast', [g.op('Greater', [x, g.scalar(1e-30)])], { to: 1 });
      return times(g.op('Div', [inRange, g.op('Max', [x, g.scalar(1e-30)])]));
    }
  }
}

/** NHWC axis -> the axis of the ONNX value. */
const axisOf = (axis: number, rank: number) => {
  const a = axis < 0 ? axis + rank : axis;
  return rank === 4 ? [0, 2, 3, 1][a] : a;
};

function forwardNode(ctx: Ctx, n: NetNode): string {
  const { g, shapes } = ctx;
  const xs = n.inputs.map((i) => ctx.val.get(i)!);
  const inShape = shapes.get(n.inputs[0])!;
  const outShape = shapes.get(n.name)!;
  const rank = inShape.length + 1;
  const op = n.op;
  const save = (r: Record<string, string>) => ctx.saved.set(n.name, r);
  switch (op.kind) {
    case 'conv': {
      const [kh, kw, cin, cout] = op.kernel.shape;
      const w = op.depthwise
        ? g.floats(transposed(op.kernel, [2, 3, 0, 1]), [cin, 1, kh, kw])
        : g.floats(transposed(op.kernel, [3, 2, 0, 1]), [cout, cin, kh, kw]);
      const pads = explicitPads(inShape.slice(0, 2), outShape.slice(0, 2), [kh, kw], op.strides, op.padding);
      const inputs = [xs[0], w, ...(op.bias ? [g.floats(op.bias.data, [op.bias.data.length])] : [])];
      const pre = g.op('Conv', inputs, { kernel_shape: [kh, kw], strides: op.strides, pads: [pads[0][0], pads[1][0], pads[0][1], pads[1][1]], group: op.depthwise ? cin : 1 });
      const y = activation(ctx, pre, op.act);
      save({ w, pre, y });
      return y;
    }
    case 'dense': {
      const mm = g.op('MatMul', [xs[0], g.floats(op.kernel.data, op.kernel.shape)]);
      const pre = op.bias ? g.op('Add', [mm, g.floats(op.bias.data, op.bias.shape)]) : mm;
      const y = activation(ctx, pre, op.act);
      save({ pre, y });
      return y;
    }
    case 'affine': {
      const scale = constFor(ctx, op.scale, rank);
      save({ scale });
      return g.op('Add', [g.op('Mul', [xs[0], scale]), constFor(ctx, op.shift, rank)]);
    }
    case 'act': {
      const y = activation(ctx, xs[0], op.act);
      save({ y });
      return y;
    }
    case 'pool': {
      const pads = explicitPads(inShape.slice(0, 2), outShape.slice(0, 2), op.size, op.strides, op.padding);
      const attrs = { kernel_shape: op.size, strides: op.strides, pads: [pads[0][0], pads[1][0], pads[0][1], pads[1][1]] };
      if (op.mode === 'avg') return g.op('AveragePool', [xs[0]], attrs);
      const y = g.op('MaxPool', [xs[0]], attrs);
      save({ y });
      return y;
    }
    case 'reduce': {
      const axes = op.axes.map((a) => axisOf(a, rank));
      const y = g.op(op.mode === 'mean' ? 'ReduceMean' : 'ReduceMax', [xs[0]], { axes, keepdims: op.keepDims ? 1 : 0 });
      // keepDims on a 4-D input stays 4-D (NCHW); without, the kept axes are in NCHW order: fine only for [N, C].
      if (!op.keepDims && rank === 4 && !(axes.includes(2) && axes.includes(3) && !axes.includes(1)))
        throw new OnnxUnsupported(`${n.name}: reduction over axes ${op.axes}`);
      save({ y });
      return y;
    }
    case 'pad': {
      const order = rank === 4 ? NHWC_TO_NCHW : op.pads.map((_, i) => i);
      const before = order.map((a) => op.pads[a][0]);
      const after = order.map((a) => op.pads[a][1]);
      return g.op('Pad', [xs[0], g.ints([...before, ...after])]);
    }
    case 'reshape': {
      const x = rank === 4 ? g.op('Transpose', [xs[0]], { perm: NCHW_TO_NHWC }) : xs[0];
      const y = g.op('Reshape', [x, g.ints([0, ...op.shape])]);
      return is4d(outShape) ? g.op('Transpose', [y], { perm: NHWC_TO_NCHW }) : y;
    }
    case 'binary': {
      const type = op.op === 'add' ? 'Add' : op.op === 'sub' ? 'Sub' : 'Mul';
      let pre: string;
      if (op.constant) {
        const c = constFor(ctx, op.constant.weights, rank);
        pre = g.op(type, op.constant.first ? [c, xs[0]] : [xs[0], c]);
        save({ c });
      } else {
        if (n.inputs.some((i) => shapes.get(i)!.join() !== outShape.join())) throw new OnnxUnsupported(`${n.name}: broadcasting ${op.op}`);
        pre = xs.slice(1).reduce((a, b) => g.op(type, [a, b]), xs[0]);
      }
      const y = activation(ctx, pre, op.act);
      save({ pre, y });
      return y;
    }
    case 'concat': {
      const pre = g.op('Concat', xs, { axis: axisOf(op.axis, rank) });
      const y = activation(ctx, pre, op.act);
      save({ pre, y });
      return y;
    }
    case 'slice': {
      const end = op.size < 0 ? INT64_MAX : op.begin + op.size;
      return g.op('Slice', [xs[0], g.ints([op.begin]), g.ints([end]), g.ints([rank - 1])]);
    }
    case 'reverseChannels':
      return g.op('Slice', [xs[0], g.ints([-1]), g.ints([-INT64_MAX]), g.ints([rank === 4 ? 1 : rank - 1]), g.ints([-1])]);
    case 'identity':
      return xs[0];
  }
}

/** dx of a strided (non-depthwise) convolution by ConvTranspose: no zero-dilated copy of dy. */
function convTransposeGradient(ctx: Ctx, name: string, d: string, op: Extract<NetNode['op'], { kind: 'conv' }>, w: string, inShape: number[], outShape: number[]): string {
  const [kh, kw, cin] = op.kernel.shape;
  const pads = explicitPads(inShape.slice(0, 2), outShape.slice(0, 2), [kh, kw], op.strides, op.padding);
  // ConvTranspose output size: s*(out-1) + output_padding + k - pads; pick output_padding to get the input size back.
  const outputPadding = [0, 1].map((a) => inShape[a] - (op.strides[a] * (outShape[a] - 1) + [kh, kw][a] - pads[a][0] - pads[a][1]));
  if (outputPadding.some((p, a) => p < 0 || p >= op.strides[a])) throw new OnnxUnsupported(`${name}: transposed convolution geometry`);
  return ctx.g.op('ConvTranspose', [d, w], {
    kernel_shape: [kh, kw], strides: op.strides, pads: [pads[0][0], pads[1][0], pads[0][1], pads[1][1]], output_padding: outputPadding,
    group: op.depthwise ? cin : 1,
  });
}

/**
 * dx of a stride-1 convolution as a FORWARD convolution of dy with the spatially flipped filter (in/out
 * swapped), padded so the output has the input's size: ONNX Runtime's Conv is far faster than its
 * ConvTranspose here and keeps its blocked layout.
 */
function convInputGradient(ctx: Ctx, name: string, d: string, op: Extract<NetNode['op'], { kind: 'conv' }>, inShape: number[], outShape: number[]): string {
  const g = ctx.g;
  const [kh, kw, cin, cout] = op.kernel.shape;
  const [H, W] = inShape;
  const [ho, wo] = outShape;
  // Flipped filter in ONNX layout: depthwise [C, 1, kh, kw]; conv [in, out, kh, kw] (the roles swap).
  const flipped = new Float32Array(op.kernel.data.length);
  const at = (i: number, j: number, a: number, b: number) => ((i * kw + j) * cin + a) * cout + b; // kernel [kh, kw, in, out]
  if (op.depthwise) {
    for (let c = 0; c < cin; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) flipped[(c * kh + i) * kw + j] = op.kernel.data[at(kh - 1 - i, kw - 1 - j, c, 0)];
  } else {
    for (let c = 0; c < cin; c++)
      for (let o = 0; o < cout; o++)
        for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) flipped[((c * cout + o) * kh + i) * kw + j] = op.kernel.data[at(kh - 1 - i, kw - 1 - j, c, o)];
  }
  const wT = g.floats(flipped, op.depthwise ? [cin, 1, kh, kw] : [cin, cout, kh, kw], `${name}_flipped`);
  const pads = explicitPads([H, W], [ho, wo], [kh, kw], op.strides, op.padding);
  // Input row p gets output rows p - pad_before .. p - pad_before + k - 1: pad dy by k - 1 - pad_before in front.
  const before = [kh - 1 - pads[0][0], kw - 1 - pads[1][0]];
  const after = [H + kh - 1 - ho - before[0], W + kw - 1 - wo - before[1]];
  let t = d;
  if ([...before, ...after].some((p) => p < 0)) {
    const [r0, c0] = before.map((p) => Math.max(0, -p));
    t = g.op('Slice', [t, g.ints([r0, c0]), g.ints([ho - Math.max(0, -after[0]), wo - Math.max(0, -after[1])]), g.ints([2, 3])]);
  }
  const convPads = [Math.max(0, before[0]), Math.max(0, before[1]), Math.max(0, after[0]), Math.max(0, after[1])];
  return g.op('Conv', [t, wT], { kernel_shape: [kh, kw], strides: [1, 1], pads: convPads, group: op.depthwise ? cin : 1 });
}

/**
 * dx of max pooling with overlapping windows (as the TF.js engine's maxPoolGradient): for each of the
 * k x k window offsets, the inputs at that offset that equal their window's max receive its dy; the
 * strided contributions are zero-dilated, shifted into place and summed, then the padding is cut off.
 */
function overlappingMaxPoolGradient(
  ctx: Ctx, dy: string, x: string, y: string, size: number[], strides: number[], pads: [number, number][], inShape: number[], outShape: number[],
): string {
  const g = ctx.g;
  const [kh, kw] = size;
  const [sh, sw] = strides;
  const [H, W, C] = inShape;
  const [ho, wo] = outShape;
  const [pt, pl] = [pads[0][0], pads[1][0]];
  // The input as the windows see it, padded with a value no max can equal (cut where 'valid' leaves rows unused).
  const [hp, wp] = [(ho - 1) * sh + kh, (wo - 1) * sw + kw];
  let xp = g.op('Pad', [x, g.ints([0, 0, pt, pl, 0, 0, Math.max(0, hp - H - pt), Math.max(0, wp - W - pl)]), g.scalar(-3.4e38)]);
  if (H + pt > hp || W + pl > wp) xp = g.op('Slice', [xp, g.ints([0, 0]), g.ints([hp, wp]), g.ints([2, 3])]);
  const [hc, wc] = [ho * sh + kh, wo * sw + kw];
  const parts: string[] = [];
  for (let a = 0; a < kh; a++)
    for (let b = 0; b < kw; b++) {
      const at = g.op('Slice', [xp, g.ints([a, b]), g.ints([a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1]), g.ints([2, 3]), g.ints([sh, sw])]);
      const share = perImage(ctx, dy, g.op('Cast', [g.op('Equal', [at, y])], { to: 1 }), outShape);
      const dilated = g.op('Pad', [g.op('Reshape', [share, g.ints([0, C, ho, 1, wo, 1])]), g.ints([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1])]);
      const flat = g.op('Reshape', [dilated, g.ints([0, C, ho * sh, wo * sw])]);
      parts.push(g.op('Pad', [flat, g.ints([0, 0, a, b, 0, 0, hc - a - ho * sh, wc - b - wo * sw])]));
    }
  return g.op('Slice', [g.op('Sum', parts), g.ints([pt, pl]), g.ints([pt + H, pl + W]), g.ints([2, 3])]);
}

/** Adds dx contributions of one node to its inputs' gradient lists. */
function backwardNode(ctx: Ctx, n: NetNode, dy: string, grads: Map<string, string[]>): void {
  const { g, shapes } = ctx;
  const add = (name: string, d: string) => grads.set(name, [...(grads.get(name) ?? []), d]);
  const x = ctx.val.get(n.inputs[0])!;
  const inShape = shapes.get(n.inputs[0])!;
  const outShape = shapes.get(n.name)!;
  const rank = inShape.length + 1;
  const s = ctx.saved.get(n.name) ?? {};
  const op = n.op;
  switch (op.kind) {
    case 'conv': {
      const d = activationBackward(ctx, dy, s.pre, s.y, op.act, outShape);
      const strided = op.strides[0] > 1 || op.strides[1] > 1;
      // Measured on 2 cores: ConvTranspose is fastest for strided layers, a forward Conv with the flipped
      // filter for stride 1 (ORT's depthwise ConvTranspose is slow; its Conv keeps a blocked layout).
      add(n.inputs[0], strided ? convTransposeGradient(ctx, n.name, d, op, s.w, inShape, outShape) : convInputGradient(ctx, n.name, d, op, inShape, outShape));
      return;
    }
    case 'dense': {
      const d = activationBackward(ctx, dy, s.pre, s.y, op.act, outShape);
      const [din, dout] = op.kernel.shape;
      add(n.inputs[0], g.op('MatMul', [d, g.floats(transposed(op.kernel, [1, 0]), [dout, din])]));
      return;
    }
    case 'affine':
      add(n.inputs[0], g.op('Mul', [dy, s.scale]));
      return;
    case 'act':
      add(n.inputs[0], activationBackward(ctx, dy, x, s.y, op.act, outShape));
      return;
    case 'pool': {
      const pads = explicitPads(inShape.slice(0, 2), outShape.slice(0, 2), op.size, op.strides, op.padding);
      const [H, W, C] = inShape;
      if (op.mode === 'avg') {
        // Without padding every window has size*size inputs: the transposed depthwise "box" convolution.
        if (pads.some(([a, b]) => a || b)) throw new OnnxUnsupported(`${n.name}: padded average pooling`);
        const k = op.size[0] * op.size[1];
        const box = g.floats(new Float32Array(C * k).fill(1 / k), [C, 1, op.size[0], op.size[1]]);
        const outputPadding = [0, 1].map((a) => inShape[a] - (op.strides[a] * (outShape[a] - 1) + op.size[a]));
        add(n.inputs[0], g.op('ConvTranspose', [dy, box], { kernel_shape: op.size, strides: op.strides, output_padding: outputPadding, group: C }));
        return;
      }
      // Max pooling with non-overlapping windows: dy, repeated over each window, goes to the inputs
      // equal to the window's max (as the TF.js engine does; ties, rare in real activations, all get it).
      if (op.size[0] !== op.strides[0] || op.size[1] !== op.strides[1]) {
        add(n.inputs[0], overlappingMaxPoolGradient(ctx, dy, x, s.y, op.size, op.strides, pads, inShape, outShape));
        return;
      }
      const [sh, sw] = op.size;
      const [ho, wo] = outShape;
      const pt = pads[0][0];
      const pl = pads[1][0];
      const repeat = (t: string) => {
        const e = g.op('Expand', [g.op('Reshape', [t, g.ints([0, C, ho, 1, wo, 1])]), g.ints([1, 1, 1, sh, 1, sw])]);
        const r = g.op('Reshape', [e, g.ints([0, C, ho * sh, wo * sw])]);
        return pt === 0 && pl === 0 && ho * sh === H && wo * sw === W ? r : g.op('Slice', [r, g.ints([pt, pl]), g.ints([pt + H, pl + W]), g.ints([2, 3])]);
      };
      const atMax = g.op('Cast', [g.op('Equal', [x, repeat(s.y)])], { to: 1 });
      add(n.inputs[0], perImage(ctx, repeat(dy), atMax, inShape));
      return;
    }
    case 'reduce': {
      if (op.mode !== 'mean') throw new OnnxUnsupported(`${n.name}: gradient of a max reduction`);
      const axes = op.axes.map((a) => axisOf(a, rank));
      if (rank !== 4 || axes.join() !== '2,3') throw new OnnxUnsupported(`${n.name}: gradient of a mean over axes ${op.axes}`);
      const [H, W, C] = inShape;
      const d4 = op.keepDims ? dy : g.op('Reshape', [dy, g.ints([0, C, 1, 1])]);
      add(n.inputs[0], g.op('Expand', [g.op('Mul', [d4, g.scalar(1 / (H * W))]), g.ints([1, C, H, W])]));
      return;
    }
    case 'pad': {
      const order = rank === 4 ? NHWC_TO_NCHW : op.pads.map((_, i) => i);
      const dims = rank === 4 ? NHWC_TO_NCHW.map((a) => [0, ...inShape][a]) : [0, ...inShape];
      const starts = order.map((a) => op.pads[a][0]);
      const ends = order.map((a, i) => (i === 0 ? INT64_MAX : op.pads[a][0] + dims[i]));
      add(n.inputs[0], g.op('Slice', [dy, g.ints(starts), g.ints(ends), g.ints(order.map((_, i) => i))]));
      return;
    }
    case 'reshape': {
      const d = is4d(outShape) ? g.op('Transpose', [dy], { perm: NCHW_TO_NHWC }) : dy;
      const back = g.op('Reshape', [d, g.ints([0, ...inShape])]);
      add(n.inputs[0], rank === 4 ? g.op('Transpose', [back], { perm: NHWC_TO_NCHW }) : back);
      return;
    }
    case 'binary': {
      const d = activationBackward(ctx, dy, s.pre, s.y, op.act, outShape);
      if (op.constant) {
        const neg = op.op === 'sub' && op.constant.first;
        add(n.inputs[0], op.op === 'mul' ? g.op('Mul', [d, s.c]) : neg ? g.op('Neg', [d]) : d);
        return;
      }
      if (op.op === 'mul' && n.inputs.length !== 2) throw new OnnxUnsupported(`${n.name}: product of ${n.inputs.length} tensors`);
      n.inputs.forEach((name, i) => {
        if (op.op === 'mul') add(name, perImage(ctx, d, ctx.val.get(n.inputs[1 - i])!, outShape));
        else add(name, op.op === 'sub' && i > 0 ? g.op('Neg', [d]) : d);
      });
      return;
    }
    case 'concat': {
      const d = activationBackward(ctx, dy, s.pre, s.y, op.act, outShape);
      const a = op.axis < 0 ? op.axis + rank : op.axis;
      const sizes = n.inputs.map((i) => shapes.get(i)![a - 1]);
      const outs = n.inputs.map((i) => g.fresh(`split_${i}`));
      g.opMulti('Split', [d, g.ints(sizes)], outs, { axis: axisOf(op.axis, rank) });
      n.inputs.forEach((name, i) => add(name, outs[i]));
      return;
    }
    case 'slice': {
      const total = inShape[inShape.length - 1];
      const size = op.size < 0 ? total - op.begin : op.size;
      const before = new Array(rank).fill(0);
      const after = new Array(rank).fill(0);
      before[rank - 1] = op.begin;
      after[rank - 1] = total - op.begin - size;
      add(n.inputs[0], g.op('Pad', [dy, g.ints([...before, ...after])]));
      return;
    }
    case 'reverseChannels':
      add(n.inputs[0], g.op('Slice', [dy, g.ints([-1]), g.ints([-INT64_MAX]), g.ints([rank === 4 ? 1 : rank - 1]), g.ints([-1])]));
      return;
    case 'identity':
      add(n.inputs[0], dy);
      return;
  }
}

export interface OnnxModels {
  /** Number of logits. */
  classes: number;
  /** x [N,H,W,C] -> logits [N,classes]. */
  forward: Uint8Array;
  /**
   * pixels [N,H,W,C] uint8, v [H,W,C] -> logits of clip(pixels + v, 0, 255): evaluation straight from
   * a dataset's stored bytes, with the perturbation added inside the graph.
   */
  images: Uint8Array;
  /** x [N,H,W,C], dy [N,K,classes] -> logits [N,classes], dx [N,K,H,W,C]: K cotangents per image, one forward pass. */
  vjp: Uint8Array;
}

function build(net: Net, inputShape: number[], shapes: Map<string, number[]>, kind: 'forward' | 'vjp' | 'images'): Uint8Array {
  const g = new OnnxGraph();
  const ctx: Ctx = { g, shapes, val: new Map(), saved: new Map() };
  if (kind === 'images') g.opMulti('Clip', [g.op('Add', [g.op('Cast', ['pixels'], { to: 1 }), 'v']), g.scalar(0), g.scalar(255)], ['x']);
  ctx.val.set(net.input, g.op('Transpose', ['x'], { perm: NHWC_TO_NCHW }, 'x_nchw'));
  for (const n of net.nodes) ctx.val.set(n.name, forwardNode(ctx, n));
  const k = shapes.get(net.output)!;
  if (k.length !== 1) throw new OnnxUnsupported(`output ${net.output} has shape [${k}], expected [classes]`);
  g.opMulti('Identity', [ctx.val.get(net.output)!], ['logits']);
  if (kind === 'forward') return g.encode([['x', ['N', ...inputShape]]], [['logits', ['N', k[0]]]]);
  if (kind === 'images') return g.encode([['pixels', ['N', ...inputShape], 'uint8'], ['v', inputShape]], [['logits', ['N', k[0]]]]);
  // Backward rows: K cotangents per image, dy [N, K, classes] -> [N*K, classes].
  const grads = new Map<string, string[]>([[net.output, [g.op('Reshape', ['dy', g.ints([-1, k[0]])], {}, 'dy_rows')]]]);
  for (const n of [...net.nodes].reverse()) {
    const parts = grads.get(n.name);
    if (!parts) continue; // no path to the output: no gradient
    const dy = parts.length === 1 ? parts[0] : g.op('Sum', parts);
    backwardNode(ctx, n, dy, grads);
  }
  const parts = grads.get(net.input);
  if (!parts) throw new OnnxUnsupported('the output does not depend on the input');
  const dxNchw = parts.length === 1 ? parts[0] : g.op('Sum', parts);
  const dxRows = g.op('Transpose', [dxNchw], { perm: NCHW_TO_NHWC });
  ctx.batch ??= g.op('Slice', [g.op('Shape', ['x']), g.ints([0]), g.ints([1])], {}, 'batch');
  g.opMulti('Reshape', [dxRows, g.op('Concat', [ctx.batch, g.ints([-1, ...inputShape])], { axis: 0 })], ['dx']);
  return g.encode(
    [['x', ['N', ...inputShape]], ['dy', ['N', 'K', k[0]]]],
    [['logits', ['N', k[0]]], ['dx', ['N', 'K', ...inputShape]]],
  );
}

/** The ONNX models of `net` on images of `inputShape` ([H, W, C]); throws OnnxUnsupported. */
export function exportOnnx(net: Net, inputShape: number[]): OnnxModels {
  // One TF.js forward pass gives every node's shape; every graph uses it.
  const shapes = inferShapes(net, inputShape);
  return {
    classes: shapes.get(net.output)![0],
    forward: build(net, inputShape, shapes, 'forward'),
    images: build(net, inputShape, shapes, 'images'),
    vjp: build(net, inputShape, shapes, 'vjp'),
  };
}

