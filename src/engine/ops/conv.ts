import * as tf from '../../tf.js';
import { transposeWeights, type OpOf, type Shape, type Weights } from '../net.js';
import { inputGradConv } from '../tfjs/inputgrad.js';
import { OnnxNode, type PhasedRows } from '../onnx/emit.js';
import { NCHWC_DOMAIN } from '../onnx/builder.js';
import { blockableChannels, padBias, paddedChannels, paddedFilterDims, reorderFilter } from '../onnx/nchwc.js';
import { activationFactor, factorFloats, onnxActivation, onnxActivationBackward, tfjsActivation } from './activation.js';
import { extent, onnxPads, windowGeometry } from './geometry.js';
import { sampleWeights as w, type OpDef } from './types.js';

/**
 * 2-D convolution (NHWC; kernel [kh, kw, in / group, out]): ordinary, grouped and depthwise, strided or
 * dilated, 'same' / 'valid' / explicit padding, bias and a fused activation.
 */

type Conv = OpOf<'conv'>;

const dilationsOf = (op: Conv): [number, number] => op.dilations ?? [1, 1];

/**
 * Whether ONNX Runtime's blocked convolution (block b) runs this one on blocked input and output:
 * ordinary or depthwise (multiplier 1), channel counts it can pad to whole blocks, no dilation, an
 * element-wise activation.
 */
function blockable(op: Conv, [, , cin]: Shape, b: number): boolean {
  const cout = op.kernel.shape[3];
  const kindFits = op.group === 1 || (op.group === cin && cout === cin);
  return (
    kindFits && blockableChannels(cin, b) && blockableChannels(cout, b) && dilationsOf(op).every((d) => d === 1) && op.act !== 'softmax'
  );
}

/** The group count of a blocked convolution: a depthwise one has one group per padded channel. */
const blockedGroup = (op: Conv, b: number) => (op.group === 1 ? 1 : paddedChannels(op.group, b));

/**
 * The activations ONNX Runtime's blocked convolution applies itself whose derivative reads only the
 * output (so the pre-activation need not be kept): its `activation` attributes, or null.
 */
function fusedActivation(act: Conv['act']): Record<string, string | number[]> | null {
  if (act === 'linear') return {};
  if (act === 'relu') return { activation: 'Relu' };
  if (act === 'relu6') return { activation: 'Clip', activation_params: [0, 6] };
  if (act === 'relu1') return { activation: 'Clip', activation_params: [-1, 1] };
  if (typeof act === 'object' && 'clip' in act) return { activation: 'Clip', activation_params: act.clip };
  if (typeof act === 'object' && 'leaky' in act) return { activation: 'LeakyRelu', activation_params: [act.leaky] };
  return null;
}

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

/** The forward filter's values in ONNX's layout [out, in / group, kh, kw], derived once per export. */
const oihw = (n: OnnxNode<Conv>): Float32Array =>
  n.e.derived.get(n.op.kernel, 'forward', () => transposeWeights(n.op.kernel, [3, 2, 0, 1]).data);

/** The forward filter in ONNX's layout, as a constant made once per graph (shared by both passes). */
function forwardFilter(n: OnnxNode<Conv>): string {
  const [kh, kw, cinG, cout] = n.op.kernel.shape;
  return n.once('w', () => n.g.floats(oihw(n), [cout, cinG, kh, kw]));
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
  return n.e.convTranspose(d, forwardFilter(n), n.dims(), {
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
function forwardGradient(n: OnnxNode<Conv>, d: string, blocked: boolean): string {
  const g = n.g;
  const op = n.op;
  const [kh, kw, , cout] = op.kernel.shape;
  const dil = dilationsOf(op);
  const [H, W, cin] = n.inShapes[0];
  const [ho, wo] = n.outShape;
  const [eh, ew] = [extent(kh, dil[0]), extent(kw, dil[1])];
  const { pads } = geometry(op, n.inShapes[0]);
  const flipped = n.e.derived.get(op.kernel, 'backward', () => backwardFilter(op));
  const dims = [cin, cout / op.group, kh, kw];
  // Input row p gets output rows p - pad_before .. p - pad_before + extent - 1: pad dy by extent - 1 - pad_before in front.
  const before = [eh - 1 - pads[0][0], ew - 1 - pads[1][0]];
  const after = [H + eh - 1 - ho - before[0], W + ew - 1 - wo - before[1]];
  const cropped = [...before, ...after].some((p) => p < 0);
  if (blocked && !cropped) {
    const b = n.e.block;
    const w = g.floats(
      n.e.derived.get(op.kernel, `backward-nchwc${b}`, () => reorderFilter(flipped, dims, b)),
      paddedFilterDims(dims, b),
      `${n.name}_flipped`,
    );
    const attrs = { kernel_shape: [kh, kw], strides: [1, 1], pads: [...before, ...after], group: blockedGroup(op, b) };
    return g.opIn(NCHWC_DOMAIN, 'Conv', [d, w], attrs);
  }
  // A blocked value has no axis order to crop: the crop and the convolution run in NCHW.
  if (blocked) return n.throughNchw(d, (plain) => forwardGradient(n, plain, false));
  const wT = g.floats(flipped, dims, `${n.name}_flipped`);
  let t = d;
  if (cropped) {
    const [r0, c0] = before.map((p) => Math.max(0, -p));
    t = g.op('Slice', [t, g.ints([r0, c0]), g.ints([ho - Math.max(0, -after[0]), wo - Math.max(0, -after[1])]), g.ints([2, 3])]);
  }
  const convPads = [Math.max(0, before[0]), Math.max(0, before[1]), Math.max(0, after[0]), Math.max(0, after[1])];
  return g.op('Conv', [t, wT], { kernel_shape: [kh, kw], strides: [1, 1], pads: convPads, group: op.group, dilations: dil });
}

/**
 * Along one axis of a stride-s convolution (kernel k, `before` padding, input n = s * m): for each
 * output phase r (input positions q = s*a + r) the taps t that reach it, as a stride-1 correlation of dy
 * (kernel t = taps[u], its pads); null where a phase gets no tap or would need a crop.
 */
function phases(k: number, s: number, before: number, m: number, dyLength: number): { taps: number[]; pads: [number, number] }[] | null {
  const out: { taps: number[]; pads: [number, number] }[] = [];
  for (let r = 0; r < s; r++) {
    // dx[s*a + r] = sum over t = r + before (mod s) of w[t] dy[a + (r + before - t) / s].
    const ts = Array.from({ length: k }, (_, t) => t).filter((t) => (((r + before - t) % s) + s) % s === 0);
    if (!ts.length) return null;
    const offsets = ts.map((t) => (r + before - t) / s);
    const lo = Math.min(...offsets);
    // Kernel position u reads dy[a + lo + u]: the tap whose offset is lo + u.
    const taps = ts.map((_, u) => ts[offsets.indexOf(lo + u)]);
    const padBefore = -lo;
    const padAfter = m - dyLength - padBefore + taps.length - 1;
    if (padBefore < 0 || padAfter < 0) return null;
    out.push({ taps, pads: [padBefore, padAfter] });
  }
  return out;
}

/**
 * dx of a strided depthwise convolution on blocked rows, or null where its geometry does not tile:
 * each output phase (s*s of them) is a blocked stride-1 depthwise convolution of dy with its share of
 * the taps (every multiply one the gradient needs), and the phases are interleaved by two
 * concatenations over the blocked rows' [.., H, W, block] view (one per axis). ONNX Runtime runs a
 * depthwise ConvTranspose as one small matrix product per channel, and only in NCHW.
 */
function phaseGradient(n: OnnxNode<Conv>, d: string): string | null {
  const g = n.g;
  const op = n.op;
  const [kh, kw, , cout] = op.kernel.shape;
  const [H, W, cin] = n.inShapes[0];
  const [ho, wo] = n.outShape;
  const [sh, sw] = op.strides;
  if (H % sh || W % sw) return null;
  const [hp, wp] = [H / sh, W / sw];
  const { pads } = geometry(op, n.inShapes[0]);
  const rows = phases(kh, sh, pads[0][0], hp, ho);
  const cols = phases(kw, sw, pads[1][0], wp, wo);
  if (!rows || !cols) return null;
  const b = n.e.block;
  const forward = oihw(n);
  // Depthwise: one filter per channel; ordinary: dy's channels (the forward's outputs) in, dx's out.
  const depthwise = op.group > 1;
  const [outs, ins] = depthwise ? [cin, 1] : [cin, cout];
  const phase = (ry: number, rx: number) => {
    const [ty, tx] = [rows[ry].taps, cols[rx].taps];
    const dims = [outs, ins, ty.length, tx.length];
    const kernel = n.e.derived.get(op.kernel, `phase-nchwc${b}-${ry}-${rx}`, () => {
      const taps = Float32Array.from({ length: outs * ins * ty.length * tx.length }, (_, i) => {
        const v = i % tx.length;
        const u = Math.floor(i / tx.length) % ty.length;
        const j = Math.floor(i / (ty.length * tx.length)) % ins;
        const c = Math.floor(i / (ins * ty.length * tx.length));
        // forward is [cout, cin / group, kh, kw]: depthwise reads [c, 0], ordinary the transpose [j, c].
        const at = depthwise ? c * kh : (j * cin + c) * kh;
        return forward[(at + ty[u]) * kw + tx[v]];
      });
      return reorderFilter(taps, dims, b, depthwise);
    });
    return g.opIn(NCHWC_DOMAIN, 'Conv', [d, g.floats(kernel, paddedFilterDims(dims, b, depthwise), `${n.name}_phase`)], {
      kernel_shape: [ty.length, tx.length],
      strides: [1, 1],
      pads: [rows[ry].pads[0], cols[rx].pads[0], rows[ry].pads[1], cols[rx].pads[1]],
      group: blockedGroup(op, b),
    });
  };
  const phased = Array.from({ length: sh }, (_, ry) => Array.from({ length: sw }, (_, rx) => phase(ry, rx)));
  const dx = interleave(n, phased, cin);
  n.e.phasedRows.set(dx, { phases: phased });
  return dx;
}

/**
 * Blocked phase rows phases[ry][rx] ([N*K, C', hp, wp]) of a value of `channels` channels interleaved
 * into [N*K, C', hp * sh, wp * sw] by two concatenations over the blocked view (one per axis).
 */
function interleave(n: OnnxNode<Conv>, phases: string[][], channels: number): string {
  const g = n.g;
  const b = n.e.block;
  const [sh, sw] = [phases.length, phases[0].length];
  const [H, W] = n.inShapes[0];
  const [hp, wp] = [H / sh, W / sw];
  const rowsOf = phases.map((side) => {
    const cells = side.map((p) => g.op('Reshape', [p, g.ints([-1, hp, wp, 1, b])]));
    return g.op('Reshape', [g.op('Concat', cells, { axis: 3 }), g.ints([-1, hp, 1, wp * sw * b])]);
  });
  return g.op('Reshape', [g.op('Concat', rowsOf, { axis: 2 }), g.ints([-1, paddedChannels(channels, b), H, W])]);
}

/**
 * Whether a pointwise convolution (1x1, stride 1, one group, blocked) takes its backward rows as stride
 * phases: every step of its gradient (the activation's factor, the transposed 1x1 filter) treats each
 * pixel alone, so it runs on each phase as on the whole image; worth it where it narrows the channels
 * (its rows are then interleaved at fewer channels than the strided layer's would have been).
 */
function takesPhases(n: OnnxNode<Conv>): boolean {
  const op = n.op;
  const [kh, kw, cin, cout] = op.kernel.shape;
  const b = n.e.block;
  const { pads } = geometry(op, n.inShapes[0]);
  return (
    n.layouts[0] === 'nchwc' &&
    kh === 1 &&
    kw === 1 &&
    op.group === 1 &&
    op.strides.every((s) => s === 1) &&
    pads.every(([a, c]) => a === 0 && c === 0) &&
    op.act !== 'softmax' &&
    op.act !== 'neg' &&
    2 * paddedChannels(cin, b) <= paddedChannels(cout, b)
  );
}

/**
 * dx of a pointwise convolution from rows held as phases (the strided layer after it computed them
 * so): the gradient of each phase, interleaved at this layer's input channels (an inverted residual's
 * expansion has a sixth of its output channels). The activation's factor is cut into the same phases
 * once per image, while still a boolean mask where it is one.
 */
function phasedGradient(n: OnnxNode<Conv>, { phases }: PhasedRows): string {
  const g = n.g;
  const b = n.e.block;
  const op = n.op as Conv & { act: Exclude<Conv['act'], 'softmax' | 'neg'> };
  const [sh, sw] = [phases.length, phases[0].length];
  const [H, W, cin] = n.inShapes[0];
  const channels = paddedChannels(n.outShape[2], b);
  const [hp, wp] = [H / sh, W / sw];
  const y = n.saved('y');
  const factor = activationFactor(n, preActivation(n), y, op.act);
  // The factor [N, C', H, W] (blocked) viewed as [N, C'/b, hp, sh, wp, sw, b]: a phase is one slice of it.
  const view = factor && g.op('Reshape', [factor.value, g.ints([0, channels / b, hp, sh, wp, sw, b])]);
  const phaseOf = (v: string, ry: number, rx: number) =>
    g.op('Reshape', [g.op('Slice', [v, g.ints([ry, rx]), g.ints([ry + 1, rx + 1]), g.ints([3, 5])]), g.ints([0, channels, hp, wp])]);
  // One phase as a 1x1 convolution of its own on images of the phase's size.
  const part = new OnnxNode<Conv>(n.e, `${n.name}_phase`, op, n.inputs, [[hp, wp, cin]], [hp, wp, n.outShape[2]], n.layouts, n.outLayout);
  const dx = phases.map((side, ry) =>
    side.map((rows, rx) => {
      const d = factor && view ? part.perImage(rows, factorFloats(n, { ...factor, value: phaseOf(view, ry, rx) })) : rows;
      return forwardGradient(part, d, true);
    }),
  );
  return interleave(n, dx, cin);
}

/**
 * The pre-activation the backward's activation factor reads. A blocked convolution's fused activation
 * (fusedActivation) has a derivative that reads only y, so its pre-activation was not kept: y stands in.
 */
const preActivation = (n: OnnxNode<Conv>): string =>
  n.layouts[0] === 'nchwc' && fusedActivation(n.op.act) ? n.saved('y') : n.saved('pre');

/** One row and column of zeros on every side, as PyTorch pads a 3x3 window. */
const PAD_1: [[number, number], [number, number]] = [
  [1, 1],
  [1, 1],
];

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
    // Blocked where the graph may be (gradient graphs: the masks of every backward row then multiply
    // blocked values as they are, where ONNX Runtime's own blocking put two reorders around each).
    layout: (op, [x], block) => (blockable(op, x, block) ? 'nchwc' : 'nchw'),
    forward(n) {
      const op = n.op;
      const [kh, kw, cinG, cout] = op.kernel.shape;
      const dims = [cout, cinG, kh, kw];
      const { pads } = geometry(op, n.inShapes[0]);
      const attrs = { kernel_shape: [kh, kw], strides: op.strides, pads: onnxPads(pads), group: op.group };
      if (n.layouts[0] === 'nchwc') {
        const b = n.e.block;
        const blockedW = n.g.floats(
          n.e.derived.get(op.kernel, `forward-nchwc${b}`, () => reorderFilter(oihw(n), dims, b)),
          paddedFilterDims(dims, b),
        );
        const bias = op.bias ? [n.g.floats(padBias(op.bias.data, b), [paddedChannels(cout, b)])] : [];
        const fused = fusedActivation(op.act);
        const out = n.g.opIn(NCHWC_DOMAIN, 'Conv', [n.inputs[0], blockedW, ...bias], {
          ...attrs,
          group: blockedGroup(op, b),
          ...fused,
        });
        if (fused) return n.save('y', out);
        return n.save('y', onnxActivation(n, n.save('pre', out), op.act));
      }
      const bias = op.bias ? [n.g.floats(op.bias.data, [op.bias.data.length])] : [];
      const pre = n.save('pre', n.g.op('Conv', [n.inputs[0], forwardFilter(n), ...bias], { ...attrs, dilations: dilationsOf(op) }));
      return n.save('y', onnxActivation(n, pre, op.act));
    },
    backward(n, dy) {
      const phases = n.e.phasedRows.get(dy);
      if (phases && takesPhases(n)) return [phasedGradient(n, phases)];
      const blocked = n.layouts[0] === 'nchwc';
      const d = onnxActivationBackward(n, dy, preActivation(n), n.saved('y'), n.op.act);
      const strided = n.op.strides[0] > 1 || n.op.strides[1] > 1;
      // Measured on 2 cores: ConvTranspose is fastest for strided layers, a forward Conv with the flipped
      // filter for stride 1 (ORT's depthwise ConvTranspose is slow; its Conv keeps a blocked layout).
      if (!strided) return [forwardGradient(n, d, blocked)];
      if (!blocked) return [transposedGradient(n, d)];
      const phased = phaseGradient(n, d);
      return [phased ?? n.throughNchw(d, (plain) => transposedGradient(n, plain))];
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
        padding: PAD_1,
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
      op: { kind: 'conv', kernel: w([3, 3, 2, 4], 13), strides: [2, 2], padding: PAD_1, group: 2, act: 'linear' },
      inputs: [[8, 8, 4]],
    },
    {
      name: 'dilated 3x3 (2), same',
      op: { kind: 'conv', kernel: w([3, 3, 3, 2], 15), strides: [1, 1], padding: 'same', group: 1, dilations: [2, 2], act: 'linear' },
      inputs: [[9, 8, 3]],
    },
    // Channels in whole blocks of ONNX Runtime's blocked layout (8, or 16 with AVX-512, which pads the
    // 8-channel ones): the gradient graph holds these blocked (onnx/nchwc.ts).
    {
      name: '1x1 16 -> 8, relu6 (blocked)',
      op: { kind: 'conv', kernel: w([1, 1, 16, 8], 19), bias: w([8], 20), strides: [1, 1], padding: 'valid', group: 1, act: 'relu6' },
      inputs: [[4, 4, 16]],
      range: [-2, 8],
      check: true,
    },
    {
      name: 'depthwise 3x3/1 16, relu (blocked)',
      op: { kind: 'conv', kernel: w([3, 3, 1, 16], 21), strides: [1, 1], padding: 'same', group: 16, act: 'relu' },
      inputs: [[5, 4, 16]],
      check: true,
    },
    {
      name: 'depthwise 3x3/2 same 16, relu6 (blocked, gradient by output phase)',
      op: { kind: 'conv', kernel: w([3, 3, 1, 16], 27), bias: w([16], 28), strides: [2, 2], padding: 'same', group: 16, act: 'relu6' },
      inputs: [[6, 4, 16]],
      range: [-2, 8],
      check: true,
    },
    // Channels a block pads (12 and 20 fill neither 8s nor 16s; 4 is one lane group): zero filter rows and
    // columns keep the padding lanes away from real channels.
    {
      name: '1x1 12 -> 20, relu6 (blocked, channels padded)',
      op: { kind: 'conv', kernel: w([1, 1, 12, 20], 33), bias: w([20], 34), strides: [1, 1], padding: 'valid', group: 1, act: 'relu6' },
      inputs: [[3, 4, 12]],
      range: [-2, 8],
      check: true,
    },
    {
      name: 'depthwise 3x3/2 same 12, silu (blocked, channels padded, by output phase)',
      op: { kind: 'conv', kernel: w([3, 3, 1, 12], 35), bias: w([12], 36), strides: [2, 2], padding: 'same', group: 12, act: 'silu' },
      inputs: [[6, 4, 12]],
    },
    {
      name: '3x3 4 -> 12, leaky (blocked, channels padded)',
      op: { kind: 'conv', kernel: w([3, 3, 4, 12], 37), strides: [1, 1], padding: 'same', group: 1, act: { leaky: 0.1 } },
      inputs: [[4, 5, 4]],
    },
    {
      name: 'depthwise 3x3/2 pads 1 8 (blocked, gradient by output phase)',
      op: { kind: 'conv', kernel: w([3, 3, 1, 8], 29), strides: [2, 2], padding: PAD_1, group: 8, act: 'linear' },
      inputs: [[6, 6, 8]],
    },
    {
      name: 'depthwise 5x5/2 same 8 (blocked, gradient by output phase)',
      op: { kind: 'conv', kernel: w([5, 5, 1, 8], 31, 0.3), strides: [2, 2], padding: 'same', group: 8, act: 'linear' },
      inputs: [[8, 6, 8]],
    },
    {
      name: 'depthwise 3x3/2 same 8, odd height (blocked, ConvTranspose)',
      op: { kind: 'conv', kernel: w([3, 3, 1, 8], 23), bias: w([8], 24), strides: [2, 2], padding: 'same', group: 8, act: 'relu6' },
      inputs: [[7, 6, 8]],
      range: [-2, 8],
    },
    {
      name: '3x3 8 -> 8, tanh, pads past the window (blocked, cropped gradient)',
      op: {
        kind: 'conv',
        kernel: w([3, 3, 8, 8], 25, 0.3),
        strides: [1, 1],
        padding: [
          [3, 0],
          [1, 1],
        ],
        group: 1,
        act: 'tanh',
      },
      inputs: [[4, 4, 8]],
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
