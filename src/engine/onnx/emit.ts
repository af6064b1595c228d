import type { Weights } from '../net.js';
import { transposeWeights } from '../net.js';
import type { Shape } from '../net.js';
import { NCHW_TO_NHWC, NHWC_TO_NCHW, storageAxis, storageDims, type Layout } from './layout.js';
import { NCHWC_DOMAIN, OnnxGraph, type WeightStore } from './builder.js';
import { paddedChannels } from './nchwc.js';

export { NCHW_TO_NHWC, NHWC_TO_NCHW, storageAxis, storageDims, type Layout };

/**
 * What the ops' ONNX writers share: the graph being built, the batch size as a value, layouts, and the
 * per-image product that keeps every backward row's forward quantities computed once per image.
 */

/** The largest integer a JS number holds; ONNX clamps slice bounds anyway. */
export const INT64_MAX = 9007199254740991;

/**
 * Where ONNX Runtime runs a model, and so the execution provider a graph is written for: its CPU
 * provider, or its WebGPU provider (a GPU through Vulkan, Metal or D3D12). Ops choose constructions the provider
 * has kernels for: the WebGPU provider lacks Sum, LogSoftmax and MaxPool's Indices output (and runs
 * int64 index arithmetic on the CPU), so those nodes are written from ops it has instead of falling
 * back to the CPU provider inside the session.
 */
export type Device = 'cpu' | 'webgpu';

/**
 * Arrays derived from a network's weights (kernels in ONNX layout, flipped backward filters), made once
 * per export: its forward, evaluation and vjp graphs all hold them (transposing ResNet-size kernels
 * three times cost seconds per load), and they are dropped with the export rather than kept as long
 * as the Net (a second copy of the weights).
 */
export class DerivedWeights {
  private readonly made = new Map<Weights, Map<string, Float32Array>>();
  get(w: Weights, key: string, make: () => Float32Array): Float32Array {
    const entry = this.made.get(w) ?? new Map<string, Float32Array>();
    this.made.set(w, entry);
    let v = entry.get(key);
    if (!v) entry.set(key, (v = make()));
    return v;
  }
}

/**
 * Backward rows of a value also held as its stride phases: phases[ry][rx] holds rows at input positions
 * (s*a + ry, s*b + rx), blocked, [N*K, C', H / sh, W / sw]. A strided convolution's gradient is
 * computed phase by phase and interleaved; a pointwise producer of that value can read the phases and
 * interleave its own, narrower rows instead (conv.ts).
 */
export interface PhasedRows {
  phases: string[][];
}

export class OnnxEmitter {
  readonly g: OnnxGraph;
  private batchValue?: string;
  /** Interleaved rows (their ONNX value) -> the phases they were made of. */
  readonly phasedRows = new Map<string, PhasedRows>();

  /**
   * @param input the ONNX value whose first dimension is the batch size.
   * @param target the execution provider the graph is written for.
   * @param derived arrays derived from the weights, shared by the graphs of one export.
   * @param weights where the graph's weight arrays go (default: inside the model).
   * @param block ONNX Runtime's channel block where this graph may hold blocked values ('nchwc'), else 0.
   */
  constructor(
    private readonly input: string,
    readonly target: Device = 'cpu',
    readonly derived = new DerivedWeights(),
    weights?: WeightStore,
    readonly block = 0,
  ) {
    this.g = new OnnxGraph(weights);
  }

  /** N, the batch size, as an int64 [1] tensor (made on first use). */
  batch(): string {
    this.batchValue ??= this.g.op('Slice', [this.g.op('Shape', [this.input]), this.g.ints([0]), this.g.ints([1])], {}, 'batch');
    return this.batchValue;
  }

  /**
   * A constant broadcast against a value of `rank` axes (batch included), trailing axes aligned, laid
   * out as that value is stored.
   */
  constant(w: Weights, rank: number, layout: Layout): string {
    if (layout === 'nchwc' && w.shape.length) throw new Error('internal: no constant is laid out blocked');
    if (layout !== 'nchw' || w.shape.length === 0) return this.g.floats(w.data, w.shape);
    const s4 = [...new Array(rank - w.shape.length).fill(1), ...w.shape];
    // Derived once per export, so that the models of one export share the array (and its place on disk).
    const data = this.derived.get(w, `nchw${rank}`, () => transposeWeights({ data: w.data, shape: s4 }, NHWC_TO_NCHW).data);
    return this.g.floats(
      data,
      NHWC_TO_NCHW.map((p) => s4[p]),
    );
  }

  /**
   * g * f, where g holds the backward rows [N*K, ...] (K cotangents per image, image-major) of a value
   * of shape `shape` and f a forward-pass quantity [N, ...] of shape `fShape` (same rank, broadcastable
   * to `shape`): each image's factor serves its K rows.
   */
  perImage(g: string, f: string, shape: Shape, layout: Layout, fShape: Shape = shape): string {
    const G = this.g;
    const dims = this.dims(shape, layout);
    if (fShape.join() === shape.join()) {
      // Flattened: one broadcast axis instead of several.
      const n = dims.reduce((a, b) => a * b, 1);
      const rows = G.op('Reshape', [g, G.op('Concat', [this.batch(), G.ints([-1, n])], { axis: 0 })]);
      const product = G.op('Mul', [rows, G.op('Reshape', [f, G.ints([0, 1, n])])]);
      return G.op('Reshape', [product, G.ints([-1, ...dims])]);
    }
    return this.rowsTimes(g, shape, f, fShape, layout);
  }

  /**
   * Storage dims (without batch) of a value of Net shape `shape` in `layout`: a blocked value's
   * channels padded to whole blocks (nchwc.ts).
   */
  dims(shape: Shape, layout: Layout): number[] {
    const dims = storageDims(shape, layout);
    return layout === 'nchwc' ? [paddedChannels(dims[0], this.block), dims[1], dims[2]] : dims;
  }

  /**
   * Dims (without batch) under which values of one layout broadcast against each other as numpy does
   * on their Net shapes: a blocked value as its memory order [C/b, H, W, b], where a [1, 1, C] value
   * broadcasts over H and W (never over channels: a blocked value's channels are split across axes).
   */
  view(shape: Shape, layout: Layout): number[] {
    const dims = this.dims(shape, layout);
    if (layout !== 'nchwc') return dims;
    const [c, h, w] = dims;
    return [c / this.block, h, w, this.block];
  }

  /** Whether a rank-4 value of Net shape `shape` fills its last channel block only partly when blocked. */
  padsChannels(shape: Shape): boolean {
    return this.block > 0 && shape.length === 3 && paddedChannels(shape[2], this.block) !== shape[2];
  }

  /**
   * The sum of a blocked value of Net shape `shape` over its rows (`summed[0]`) and / or columns
   * (`summed[1]`), by a ReduceSum of the blocked view; blocked, those axes kept as 1.
   */
  sumPixels(v: string, shape: Shape, summed: [boolean, boolean]): string {
    const G = this.g;
    const axes = [2, 3].filter((_, i) => summed[i]);
    const view = G.op('Reshape', [v, G.ints([-1, ...this.view(shape, 'nchwc')])]);
    const sum = G.op('ReduceSum', [view, G.ints(axes)], { keepdims: 1 });
    const kept = shape.map((d, i) => (summed[i] ? 1 : d));
    return G.op('Reshape', [sum, G.ints([-1, ...this.dims(kept, 'nchwc')])]);
  }

  /**
   * Backward rows g [N*K, ...] of shape gShape times a per-image quantity f [N, ...] of shape fShape (same
   * rank, numpy broadcasting between the two): rows [N*K, ...broadcast shape].
   */
  rowsTimes(g: string, gShape: Shape, f: string, fShape: Shape, layout: Layout): string {
    const G = this.g;
    const outShape = gShape.map((d, i) => Math.max(d, fShape[i]));
    const rows = G.op('Reshape', [g, G.op('Concat', [this.batch(), G.ints([-1, ...this.view(gShape, layout)])], { axis: 0 })]);
    const product = G.op('Mul', [rows, this.broadcastOperand(f, fShape, outShape, layout, [0, 1])]);
    return G.op('Reshape', [product, G.ints([-1, ...this.dims(outShape, layout)])]);
  }

  /**
   * Value v of Net shape `shape` as an operand broadcast against `outShape`: its view (`view`) under
   * the leading dims `lead` (a Reshape's: -1, or 0 to keep an axis). A blocked value of 1x1 pixels is
   * first widened to the output's columns (a small Expand): ONNX Runtime then broadcasts over rows of
   * W*b values rather than over runs of b, which it walks several times slower.
   */
  broadcastOperand(v: string, shape: Shape, outShape: Shape, layout: Layout, lead: number[]): string {
    const G = this.g;
    const view = G.op('Reshape', [v, G.ints([...lead, ...this.view(shape, layout)])]);
    if (layout !== 'nchwc' || shape.length !== 3 || shape[1] !== 1 || outShape[1] === 1 || outShape[0] === 1) return view;
    const wide = this.view([shape[0], outShape[1], shape[2]], layout);
    return G.op('Expand', [view, G.ints([...lead.map(() => 1), ...wide])]);
  }

  /** Sums backward rows of a broadcast result back to an input's shape (axes where it had 1). */
  unbroadcast(rows: string, outShape: Shape, inShape: Shape, layout: Layout): string {
    const summed = inShape.map((d, i) => d === 1 && outShape[i] !== 1);
    if (!summed.some(Boolean)) return rows;
    if (layout === 'nchwc') {
      // Over H and W of the blocked view [rows, C/b, H, W, b] (a blocked value never broadcasts over channels).
      if (summed[2]) throw new Error('internal: a blocked value broadcast over channels');
      if (summed[0] && summed[1]) {
        // ONNX Runtime's blocked global pooling: a ReduceSum of the view walks runs of b values.
        const mean = this.g.opIn(NCHWC_DOMAIN, 'GlobalAveragePool', [rows]);
        return this.g.op('Mul', [mean, this.g.scalar(outShape[0] * outShape[1])]);
      }
      return this.sumPixels(rows, outShape, [summed[0], summed[1]]);
    }
    const axes = summed.map((s, i) => (s ? storageAxis(i + 1, inShape.length + 1, layout) : -1)).filter((a) => a >= 0);
    return this.g.op('ReduceSum', [rows, this.g.ints(axes.sort())], { keepdims: 1 });
  }

  /**
   * ConvTranspose of x [N, inChannels, H, W] (NCHW) by w [inChannels, outPerGroup, kh, kw]. ONNX
   * Runtime's WebGPU kernel is wrong for grouped ConvTranspose with an even number of input channels
   * per group (its vectorised path; exact with odd counts and with one group): there each group gets a
   * zero input channel and a zero filter row, which changes no sum.
   */
  convTranspose(x: string, w: string, [inChannels, H, W]: number[], attrs: Record<string, number | number[]>): string {
    const G = this.g;
    const group = (attrs.group as number | undefined) ?? 1;
    const perGroup = inChannels / group;
    if (this.target === 'cpu' || group === 1 || perGroup % 2 === 1) return G.op('ConvTranspose', [x, w], attrs);
    const pad = (v: string, dims: number[], axis: number) => {
      const pads = new Array(2 * dims.length).fill(0);
      pads[dims.length + axis] = 1;
      return G.op('Pad', [G.op('Reshape', [v, G.ints(dims)]), G.ints(pads)]);
    };
    const xs = G.op('Reshape', [pad(x, [-1, group, perGroup, H, W], 2), G.ints([-1, group * (perGroup + 1), H, W])]);
    const ws = G.op('Reshape', [
      pad(w, [group, perGroup, -1], 1),
      G.ints([group * (perGroup + 1), -1, ...(attrs.kernel_shape as number[])]),
    ]);
    return G.op('ConvTranspose', [xs, ws], attrs);
  }

  /**
   * Moves a value of Net shape `shape` between layouts (rank 4 only; forward values and backward rows
   * alike). At 1x1 pixels every layout holds the same memory order (unless blocking pads channels):
   * a reshape.
   */
  convert(value: string, from: Layout, to: Layout, shape: Shape): string {
    if (from === to) return value;
    const G = this.g;
    const [h, w, channels] = shape;
    const padded = (from === 'nchwc' || to === 'nchwc') && this.padsChannels(shape);
    if (h === 1 && w === 1 && !padded) return G.op('Reshape', [value, G.ints([-1, ...this.dims(shape, to)])]);
    if (to === 'nchwc') return G.opIn(NCHWC_DOMAIN, 'ReorderInput', [value], { channels_last: from === 'plain' ? 1 : 0 });
    if (from === 'nchwc') return G.opIn(NCHWC_DOMAIN, 'ReorderOutput', [value], { channels, channels_last: to === 'plain' ? 1 : 0 });
    return G.op('Transpose', [value], { perm: to === 'nchw' ? NHWC_TO_NCHW : NCHW_TO_NHWC });
  }

  /** The sum of gradient contributions: one value, a Sum node, or (WebGPU: no Sum kernel) a balanced tree of Adds. */
  sum(parts: string[]): string {
    if (parts.length === 1) return parts[0];
    if (this.target === 'cpu') return this.g.op('Sum', parts);
    const half = Math.ceil(parts.length / 2);
    return this.g.op('Add', [this.sum(parts.slice(0, half)), this.sum(parts.slice(half))]);
  }
}

/** One node as its op's ONNX writer sees it. */
export class OnnxNode<O> {
  private readonly kept = new Map<string, string>();
  constructor(
    readonly e: OnnxEmitter,
    readonly name: string,
    readonly op: O,
    /** ONNX values of the inputs, in `layouts`. */
    readonly inputs: string[],
    readonly inShapes: Shape[],
    readonly outShape: Shape,
    readonly layouts: Layout[],
    readonly outLayout: Layout,
  ) {}
  get g(): OnnxGraph {
    return this.e.g;
  }
  /** Rank (batch included) of input i, or of the output when i is omitted. */
  rank(i?: number): number {
    return (i === undefined ? this.outShape : this.inShapes[i]).length + 1;
  }
  /** Storage axis of a Net axis of input i (default 0). */
  axis(a: number, i = 0): number {
    return storageAxis(a, this.rank(i), this.layouts[i]);
  }
  /** Storage dims (without batch) of input i, or of the output when i is omitted. */
  dims(i?: number): number[] {
    return i === undefined ? this.e.dims(this.outShape, this.outLayout) : this.e.dims(this.inShapes[i], this.layouts[i]);
  }
  /** A constant laid out for input i's storage (default 0). */
  constant(w: Weights, i = 0): string {
    return this.e.constant(w, this.rank(i), this.layouts[i]);
  }
  /** Backward rows of the output times a forward quantity of the output's shape (or a broadcastable one). */
  perImage(rows: string, f: string, fShape?: Shape): string {
    return this.e.perImage(rows, f, this.outShape, this.outLayout, fShape);
  }
  /** Keeps a forward value for the backward pass. */
  save(key: string, value: string): string {
    this.kept.set(key, value);
    return value;
  }
  saved(key: string): string {
    const v = this.kept.get(key);
    if (v === undefined) throw new Error(`internal: ${this.name} saved no "${key}"`);
    return v;
  }
  /**
   * `plain` (a gradient step written for NCHW) on blocked rows d of the output: d reordered to NCHW,
   * the result (rows of input 0) back to the blocked layout. For what a blocked value cannot do (a
   * crop, a ConvTranspose, MaxPool's indices).
   */
  throughNchw(d: string, plain: (d: string) => string): string {
    const e = this.e;
    return e.convert(plain(e.convert(d, 'nchwc', 'nchw', this.outShape)), 'nchw', 'nchwc', this.inShapes[0]);
  }
  /** A value the forward or the backward pass may need, made by whichever asks first and shared. */
  once(key: string, make: () => string): string {
    return this.kept.get(key) ?? this.save(key, make());
  }
}
