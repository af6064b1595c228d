import * as tf from '../../tf.js';
import { transposeWeights, type OpOf, type Weights } from '../net.js';
import { inputGradConv } from '../tfjs/inputgrad.js';
import type { OnnxNode } from '../onnx/emit.js';
import { onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import { extent, onnxPads, windowGeometry } from './geometry.js';
import { sampleWeights as w, type OpDef } from './types.js';

/**
 * 2-D convolution (NHWC; kernel [kh, kw, in / group, out]): ordinary, grouped and depthwise, strided or
 * dilated, 'same' / 'valid' / explicit padding, bias and a fused activation.
 */

type Conv = OpOf<'conv'>;

const dilationsOf = (op: Conv): [number, number] => op.dilations ?? [1, 1];

/** Depthwise: one group per input channel (any multiplier). */
const isDepthwise = (op: Conv, cin: number) => op.group > 1 && op.group === cin && op.kernel.shape[2] === 1;

function geometry(op: Conv, inShape: number[]) {
  const [kh, kw] = op.kernel.shape;
  return windowGeometry(inShape, [kh, kw], op.strides, op.padding, dilationsOf(op));
}

/** The kernel's output channels of group gi, [kh, kw, in / group, out / group]. */
function groupKernel(k: Weights, group: number, gi: number): Weights {
  const [kh, kw, cin, cout] = k.shape;
  const per = cout / group;
  const data = new Float32Array(kh * kw * cin * per);
  for (let t = 0; t < kh * kw * cin; t++) data.set(k.data.subarray(t * cout + gi * per, t * cout + (gi + 1) * per), t * per);
  return { data, shape: [kh, kw, cin, per] };
}

/** A grouped kernel [kh, kw, in / group, out] as the full kernel [kh, kw, in, out], zero across groups. */
function blockDiagonal(op: Conv): Weights {
  const [kh, kw, cinG, cout] = op.kernel.shape;
  const cin = cinG * op.group;
  const coutG = cout / op.group;
  const data = new Float32Array(kh * kw * cin * cout);
  for (let t = 0; t < kh * kw; t++)
    for (let ci = 0; ci < cin; ci++) {
      const gi = Math.floor(ci / cinG);
      for (let co = gi * coutG; co < (gi + 1) * coutG; co++)
        data[(t * cin + ci) * cout + co] = op.kernel.data[(t * cinG + (ci % cinG)) * cout + co];
    }
  return { data, shape: [kh, kw, cin, cout] };
}

/**
 * The input gradient's filter for a stride-1 convolution run forward on dy: spatially flipped, in and
 * out swapped within each group. ONNX layout [in, out / group, kh, kw].
 */
function backwardFilter(op: Conv): Float32Array {
  const [kh, kw, cinG, cout] = op.kernel.shape;
  const coutG = cout / op.group;
  const out = new Float32Array(op.kernel.data.length);
  for (let gi = 0; gi < op.group; gi++)
    for (let ci = 0; ci < cinG; ci++)
      for (let co = 0; co < coutG; co++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++)
            out[(((gi * cinG + ci) * coutG + co) * kh + i) * kw + j] =
              op.kernel.data[((kh - 1 - i) * kw + (kw - 1 - j)) * cinG * cout + ci * cout + gi * coutG + co];
  return out;
}

/** dx of a strided convolution by ConvTranspose with the forward filter: no zero-dilated copy of dy. */
function transposedGradient(n: OnnxNode<Conv>, d: string): string {
  const op = n.op;
  const [kh, kw] = op.kernel.shape;
  const dil = dilationsOf(op);
  const { pads } = geometry(op, n.inShapes[0]);
  const outHW = n.outShape;
  // ConvTranspose output size: s*(out-1) + output_padding + extent - pads; pick output_padding to get the input size back.
  const outputPadding = [0, 1].map(
    (a) => n.inShapes[0][a] - (op.strides[a] * (outHW[a] - 1) + extent([kh, kw][a], dil[a]) - pads[a][0] - pads[a][1]),
  );
  return n.e.convTranspose(d, n.saved('w'), n.dims(), {
    kernel_shape: [kh, kw],
    strides: op.strides,
    pads: onnxPads(pads),
    output_padding: outputPadding,
    group: op.group,
    dilations: dil,
  });
}

/**
 * dx of a stride-1 convolution as a FORWARD convolution of dy with the flipped filter, padded so the
 * output has the input's size: ONNX Runtime's Conv is far faster than its ConvTranspose here and keeps
 * its blocked layout.
 */
function forwardGradient(n: OnnxNode<Conv>, d: string): string {
  const g = n.g;
  const op = n.op;
  const [kh, kw, , cout] = op.kernel.shape;
  const dil = dilationsOf(op);
  const [H, W, cin] = n.inShapes[0];
  const [ho, wo] = n.outShape;
  const [eh, ew] = [extent(kh, dil[0]), extent(kw, dil[1])];
  const { pads } = geometry(op, n.inShapes[0]);
  const wT = g.floats(
    n.e.derived.get(op.kernel, 'backward', () => backwardFilter(op)),
    [cin, cout / op.group, kh, kw],
    `${n.name}_flipped`,
  );
  // Input row p gets output rows p - pad_before .. p - pad_before + extent - 1: pad dy by extent - 1 - pad_before in front.
  const before = [eh - 1 - pads[0][0], ew - 1 - pads[1][0]];
  const after = [H + eh - 1 - ho - before[0], W + ew - 1 - wo - before[1]];
  let t = d;
  if ([...before, ...after].some((p) => p < 0)) {
    const [r0, c0] = before.map((p) => Math.max(0, -p));
    t = g.op('Slice', [t, g.ints([r0, c0]), g.ints([ho - Math.max(0, -after[0]), wo - Math.max(0, -after[1])]), g.ints([2, 3])]);
  }
  const convPads = [Math.max(0, before[0]), Math.max(0, before[1]), Math.max(0, after[0]), Math.max(0, after[1])];
  return g.op('Conv', [t, wT], { kernel_shape: [kh, kw], strides: [1, 1], pads: convPads, group: op.group, dilations: dil });
}

export const conv: OpDef<'conv'> = {
  kind: 'conv',
  shape(op, [x]) {
    const [kh, kw, cinG, cout] = op.kernel.shape;
    if (x.length !== 3) throw new Error(`a convolution takes [H, W, C] images, got [${x}]`);
    if (x[2] !== cinG * op.group || cout % op.group !== 0)
      throw new Error(`kernel [${kh}, ${kw}, ${cinG}, ${cout}] with ${op.group} group(s) does not fit ${x[2]} input channels`);
    const { out } = geometry(op, x);
    if (out[0] < 1 || out[1] < 1) throw new Error(`a ${kh}x${kw} window does not fit a ${x[0]}x${x[1]} input`);
    return [out[0], out[1], cout];
  },
  tfjs(op, b) {
    const act = tfjsActivation(op.act);
    const bias = op.bias && b.tensor(op.bias);
    const withBias = (y: tf.Tensor) => act(bias ? tf.add(y, bias) : y);
    const dil = dilationsOf(op);
    const [kh, kw, , cout] = op.kernel.shape;
    if (op.group === 1) {
      const c = inputGradConv('conv', b.tensor(op.kernel) as tf.Tensor4D, op.strides, op.padding, dil);
      b.own(c.tensors[1]);
      return ([x]) => withBias(c.apply(x as tf.Tensor4D));
    }
    if (isDepthwise(op, op.group) && cout === op.group) {
      // [kh, kw, 1, C * m] holds the same numbers as TF's depthwise filter [kh, kw, C, m].
      const f = b.tensor({ data: op.kernel.data, shape: [kh, kw, op.group, cout / op.group] }) as tf.Tensor4D;
      const c = inputGradConv('depthwise', f, op.strides, op.padding, dil);
      b.own(c.tensors[1]);
      return ([x]) => withBias(c.apply(x as tf.Tensor4D));
    }
    if (isDepthwise(op, op.group)) {
      // Depth multiplier > 1: the input gradient kernels assume 1, so run it as an ordinary convolution
      // whose kernel is zero outside each channel's own outputs.
      const c = inputGradConv('conv', b.tensor(blockDiagonal(op)) as tf.Tensor4D, op.strides, op.padding, dil);
      b.own(c.tensors[1]);
      return ([x]) => withBias(c.apply(x as tf.Tensor4D));
    }
    // Grouped: TF.js has no grouped convolution; one convolution per group, concatenated.
    const parts = Array.from({ length: op.group }, (_, gi) => {
      const c = inputGradConv('conv', b.tensor(groupKernel(op.kernel, op.group, gi)) as tf.Tensor4D, op.strides, op.padding, dil);
      b.own(c.tensors[1]);
      return c;
    });
    return ([x]) =>
      withBias(
        tf.concat(
          tf.split(x, op.group, 3).map((xi, gi) => parts[gi].apply(xi as tf.Tensor4D)),
          3,
        ),
      );
  },
  onnx: {
    layout: 'nchw',
    forward(n) {
      const op = n.op;
      const [kh, kw, cinG, cout] = op.kernel.shape;
      const w = n.save(
        'w',
        n.g.floats(
          n.e.derived.get(op.kernel, 'forward', () => transposeWeights(op.kernel, [3, 2, 0, 1]).data),
          [cout, cinG, kh, kw],
        ),
      );
      const inputs = [n.inputs[0], w, ...(op.bias ? [n.g.floats(op.bias.data, [op.bias.data.length])] : [])];
      const { pads } = geometry(op, n.inShapes[0]);
      const pre = n.save(
        'pre',
        n.g.op('Conv', inputs, {
          kernel_shape: [kh, kw],
          strides: op.strides,
          pads: onnxPads(pads),
          group: op.group,
          dilations: dilationsOf(op),
        }),
      );
      return n.save('y', onnxActivation(n, pre, op.act));
    },
    backward(n, dy) {
      const d = onnxActivationBackward(n, dy, n.saved('pre'), n.saved('y'), n.op.act);
      const strided = n.op.strides[0] > 1 || n.op.strides[1] > 1;
      // Measured on 2 cores: ConvTranspose is fastest for strided layers, a forward Conv with the flipped
      // filter for stride 1 (ORT's depthwise ConvTranspose is slow; its Conv keeps a blocked layout).
      return [strided ? transposedGradient(n, d) : forwardGradient(n, d)];
    },
  },
  samples: [
    {
      name: '3x3/2 same, relu6',
      op: { kind: 'conv', kernel: w([3, 3, 3, 4], 1), bias: w([4], 2), strides: [2, 2], padding: 'same', group: 1, act: 'relu6' },
      inputs: [[9, 9, 3]],
      range: [-2, 8],
    },
    {
      name: '3x3/2 valid, odd geometry',
      op: { kind: 'conv', kernel: w([3, 3, 3, 2], 3), strides: [2, 2], padding: 'valid', group: 1, act: 'tanh' },
      inputs: [[8, 8, 3]],
    },
    {
      name: 'depthwise 3x3/1 same, leaky',
      op: { kind: 'conv', kernel: w([3, 3, 1, 4], 5), strides: [1, 1], padding: 'same', group: 4, act: { leaky: 0.1 } },
      inputs: [[6, 6, 4]],
    },
    {
      name: 'depthwise x2 multiplier, 3x3/2 explicit pads',
      op: {
        kind: 'conv',
        kernel: w([3, 3, 1, 6], 7),
        bias: w([6], 8),
        strides: [2, 2],
        padding: [
          [1, 1],
          [1, 1],
        ],
        group: 3,
        act: 'relu',
      },
      inputs: [[7, 7, 3]],
    },
    {
      name: '1x1 valid',
      op: { kind: 'conv', kernel: w([1, 1, 4, 5], 9), strides: [1, 1], padding: 'valid', group: 1, act: 'linear' },
      inputs: [[5, 5, 4]],
    },
    {
      name: 'grouped (2), asymmetric explicit pads',
      op: {
        kind: 'conv',
        kernel: w([3, 3, 2, 6], 11),
        bias: w([6], 12),
        strides: [1, 1],
        padding: [
          [1, 0],
          [2, 1],
        ],
        group: 2,
        act: 'linear',
      },
      inputs: [[6, 5, 4]],
    },
    {
      name: 'grouped (2), 3x3/2 explicit pads',
      op: {
        kind: 'conv',
        kernel: w([3, 3, 2, 4], 13),
        strides: [2, 2],
        padding: [
          [1, 1],
          [1, 1],
        ],
        group: 2,
        act: 'linear',
      },
      inputs: [[8, 8, 4]],
    },
    {
      name: 'dilated 3x3 (2), same',
      op: { kind: 'conv', kernel: w([3, 3, 3, 2], 15), strides: [1, 1], padding: 'same', group: 1, dilations: [2, 2], act: 'linear' },
      inputs: [[9, 8, 3]],
    },
    {
      name: '7x7/2 pad 3 (ResNet stem)',
      op: {
        kind: 'conv',
        kernel: w([7, 7, 3, 4], 17, 0.2),
        strides: [2, 2],
        padding: [
          [3, 3],
          [3, 3],
        ],
        group: 1,
        act: 'relu',
      },
      inputs: [[12, 12, 3]],
    },
  ],
};
