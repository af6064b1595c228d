/**
 * The engine's model description: a DAG of plain operations with float32 weights. Every importable
 * format (LayersModel, TFLite, ONNX) compiles to it, and the card's preprocessing and output mapping
 * are nodes of it too, so one network runs on every runtime: TF.js (forward and input gradients with
 * custom kernels) and ONNX Runtime, which gets a hand-built backward graph because it has no autodiff.
 * What each kind of node means and how every runtime runs and differentiates it lives in one module
 * per kind under ops/ (registered in ops/registry.ts).
 *
 * Shapes are those of the values themselves, batch first; spatial values (the input image, every
 * convolution and pooling) are NHWC. Node shapes written here exclude the batch axis.
 */

/** A value's shape without the batch axis. */
export type Shape = number[];

export interface Weights {
  data: Float32Array;
  shape: number[];
}

/** 'same' / 'valid' as TensorFlow computes them, or explicit [[top, bottom], [left, right]]. */
export type Padding = 'same' | 'valid' | [[number, number], [number, number]];

/**
 * Element-wise functions, fusable into the nodes that take an `act`. 'relu1' clips to [-1, 1]
 * (TFLite RELU_N1_TO_1); 'log' is log(max(x, 1e-30)); 'softmax' runs over the last axis; 'gelu' is
 * the exact (erf) GELU; 'silu' (swish) is x * sigmoid(x); hardSigmoid is max(0, min(1, alpha x + beta)).
 */
export type Activation =
  | 'linear'
  | 'relu'
  | 'relu6'
  | 'relu1'
  | 'sigmoid'
  | 'tanh'
  | 'elu'
  | 'softmax'
  | 'log'
  | 'gelu'
  | 'erf'
  | 'sqrt'
  | 'reciprocal'
  | 'exp'
  | 'neg'
  | 'hardSwish'
  | 'silu'
  | { leaky: number }
  | { clip: [number, number] }
  | { hardSigmoid: [number, number] }
  | { pow: number };

export type NodeOp =
  /**
   * 2-D convolution, NHWC: kernel [kh, kw, in / group, out]. group 1: ordinary; group = in channels:
   * depthwise (out = in * multiplier, output channel c * multiplier + j reads input channel c).
   */
  | {
      kind: 'conv';
      kernel: Weights;
      bias?: Weights;
      strides: [number, number];
      padding: Padding;
      group: number;
      dilations?: [number, number];
      act: Activation;
    }
  /** x [..., in] @ kernel [in, out] (+ bias), on the last axis. */
  | { kind: 'dense'; kernel: Weights; bias?: Weights; act: Activation }
  /** x * scale + shift along `axis` (default the last: channels): unfolded batch-norm, preprocessing. */
  | { kind: 'affine'; scale: Weights; shift: Weights; axis?: number }
  | { kind: 'act'; act: Activation }
  /** max(x, 0) + slope * min(x, 0), slope broadcast against x (numpy rules, batch axis included). */
  | { kind: 'prelu'; slope: Weights }
  /**
   * Pooling, NHWC. Max pooling pads with -infinity; average pooling divides by the window's size
   * including explicit padding when countIncludePad, else by the inputs it covers (TF's 'same').
   */
  | { kind: 'pool'; mode: 'avg' | 'max'; size: [number, number]; strides: [number, number]; padding: Padding; countIncludePad?: boolean }
  | { kind: 'reduce'; mode: 'mean' | 'max' | 'sum'; axes: number[]; keepDims: boolean }
  /** Constant padding, one [before, after] per axis (batch included). */
  | { kind: 'pad'; pads: [number, number][]; value?: number }
  /** Target shape without the batch axis (-1 allowed once). */
  | { kind: 'reshape'; shape: number[] }
  /** Axis permutation; perm[0] is 0 (the batch stays first). */
  | { kind: 'transpose'; perm: number[] }
  /**
   * Element-wise sum / difference / product / quotient of the inputs (same rank, numpy broadcasting), or
   * of the input and a constant (broadcast from the trailing axes; `first`: the constant is the left operand).
   */
  | { kind: 'binary'; op: 'add' | 'sub' | 'mul' | 'div'; constant?: { weights: Weights; first: boolean }; act: Activation }
  | { kind: 'concat'; axis: number; act: Activation }
  /** Python's x[begin:end:step] along one axis (negative begin/end count from the end; clamped). */
  | { kind: 'slice'; axis: number; begin: number; end: number; step: number }
  /** a @ b over the last two axes of two values, leading axes broadcast (attention). */
  | { kind: 'matmul' }
  /** Normalises over the axes from `axis` to the last, then * scale + bias (over those axes). */
  | { kind: 'layerNorm'; axis: number; epsilon: number; scale?: Weights; bias?: Weights }
  /** Local response normalisation across channels (the last axis), as ONNX's LRN defines it. */
  | { kind: 'lrn'; size: number; alpha: number; beta: number; bias: number }
  | { kind: 'softmax'; axis: number; log: boolean }
  /** A constant value [...shape] repeated for every image of the batch (the input only sets the batch size). */
  | { kind: 'const'; value: Weights }
  | { kind: 'identity' };

export type OpKind = NodeOp['kind'];
export type OpOf<K extends OpKind> = Extract<NodeOp, { kind: K }>;

export interface NetNode {
  name: string;
  inputs: string[];
  op: NodeOp;
}

export interface Net {
  input: string;
  nodes: NetNode[];
  output: string;
}

/** The largest magnitude slice bounds take: "to the end" in either direction. */
export const SLICE_END = 2 ** 53 - 1;

export function weights(data: Float32Array | number[], shape: number[]): Weights {
  return { data: data instanceof Float32Array ? data : Float32Array.from(data), shape };
}

/** A row-major array of `shape` transposed by `perm` (any rank), in an array of the same type. */
export function transposeArray<T extends Float32Array | Float64Array>(
  data: T,
  shape: number[],
  perm: number[],
): { data: T; shape: number[] } {
  const outShape = perm.map((p) => shape[p]);
  const moved = new (data.constructor as new (n: number) => T)(data.length);
  // The same move with unit axes dropped and neighbours that stay neighbours merged: a 1x1
  // convolution's filters [O, I, 1, 1] -> [1, 1, I, O] are a plain 2-D transpose.
  ({ shape, perm } = simplestTranspose(shape, perm));
  const out = perm.map((p) => shape[p]);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  if (out.length === 0 || perm.every((p, i) => p === i)) {
    moved.set(data);
    return { data: moved, shape: outShape };
  }
  const last = out.length - 1;
  // The source's contiguous axis lands elsewhere: move tile by tile (a row by row walk would read one
  // value per cache line, and turning VGG-16's dense kernels took seconds that way).
  const q = perm.indexOf(shape.length - 1);
  if (q !== last) {
    tiledTranspose(
      data,
      moved,
      out,
      perm.map((p) => strides[p]),
      q,
    );
    return { data: moved, shape: outShape };
  }
  // Row by row of the last output axis, whose source elements are `step` apart.
  const [inner, step] = [out[last], strides[perm[last]]];
  const idx = new Array<number>(last).fill(0);
  for (let o = 0; o < moved.length; o += inner) {
    let src = 0;
    for (let a = 0; a < last; a++) src += idx[a] * strides[perm[a]];
    for (let j = 0; j < inner; j++, src += step) moved[o + j] = data[src];
    for (let a = last - 1; a >= 0 && ++idx[a] === out[a]; a--) idx[a] = 0;
  }
  return { data: moved, shape: outShape };
}

/** `shape` and `perm` without unit axes, and with runs of source axes that stay in order in the output merged into one. */
function simplestTranspose(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const kept = perm.filter((p) => shape[p] !== 1);
  // Runs of consecutive source axes, in output order.
  const runs: number[][] = [];
  for (const p of kept) {
    const run = runs[runs.length - 1];
    if (run && p === run[run.length - 1] + 1) run.push(p);
    else runs.push([p]);
  }
  const bySource = [...runs].sort((a, b) => a[0] - b[0]);
  return {
    shape: bySource.map((run) => run.reduce((n, p) => n * shape[p], 1)),
    perm: runs.map((run) => bySource.indexOf(run)),
  };
}

/** Square tiles of this many values a side: a tile of the source and one of the result stay in L1. */
const TILE = 32;

/**
 * Fills `moved` (shape `out`) from `data`, where output axis a steps `from[a]` through the source and
 * output axis q is the source's contiguous one: for each index of the other axes, the [out[q], out[last]]
 * plane moves as a tiled 2-D transpose.
 */
function tiledTranspose(data: ArrayLike<number>, moved: Float32Array | Float64Array, out: number[], from: number[], q: number): void {
  const last = out.length - 1;
  const to = out.map((_, i) => out.slice(i + 1).reduce((a, b) => a * b, 1));
  const outer = out.map((_, i) => i).filter((i) => i !== q && i !== last);
  const [A, B, stepB, rowA] = [out[q], out[last], from[last], to[q]];
  const idx = new Array<number>(outer.length).fill(0);
  const planes = outer.reduce((n, a) => n * out[a], 1);
  for (let p = 0; p < planes; p++) {
    let [src, dst] = [0, 0];
    outer.forEach((a, k) => ((src += idx[k] * from[a]), (dst += idx[k] * to[a])));
    for (let a0 = 0; a0 < A; a0 += TILE)
      for (let b0 = 0; b0 < B; b0 += TILE) {
        const [a1, b1] = [Math.min(a0 + TILE, A), Math.min(b0 + TILE, B)];
        for (let b = b0; b < b1; b++) {
          const s = src + b * stepB;
          for (let a = a0; a < a1; a++) moved[dst + a * rowA + b] = data[s + a];
        }
      }
    for (let k = outer.length - 1; k >= 0 && ++idx[k] === out[outer[k]]; k--) idx[k] = 0;
  }
}

/** A weight array transposed by `perm` (row-major, any rank). */
export function transposeWeights(w: Weights, perm: number[]): Weights {
  return transposeArray(w.data, w.shape, perm);
}

/** Where a model network sits between the card's preprocessing and output mapping. */
export function chain(pre: NetNode[], net: Net, post: NetNode[], input = 'pixels'): Net {
  const rename = (n: string) => (n === net.input ? (pre.length ? pre[pre.length - 1].name : input) : n);
  const nodes: NetNode[] = [];
  let prev = input;
  for (const p of pre) {
    nodes.push({ ...p, inputs: [prev] });
    prev = p.name;
  }
  for (const n of net.nodes) nodes.push({ ...n, inputs: n.inputs.map(rename) });
  prev = rename(net.output);
  for (const p of post) {
    nodes.push({ ...p, inputs: [prev] });
    prev = p.name;
  }
  return { input, nodes, output: prev };
}
