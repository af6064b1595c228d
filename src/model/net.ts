/**
 * The engine's model description: a DAG of a few plain operations with float32 weights, in NHWC.
 * Every importable format (LayersModel, TFLite) compiles to it, and the card's preprocessing and
 * output mapping are nodes of it too, so one network runs on every runtime: TF.js (forward and input
 * gradients with custom kernels, tfjsNet.ts) and ONNX Runtime (onnx/*.ts), which gets a hand-built
 * backward graph because it has no autodiff.
 */

export interface Weights {
  data: Float32Array;
  shape: number[];
}

export type Padding = 'same' | 'valid';

/** Element-wise activations; 'relu1' clips to [-1, 1] (TFLite RELU_N1_TO_1); 'log' is log(max(x, 1e-30)). */
export type Activation = 'linear' | 'relu' | 'relu6' | 'relu1' | 'sigmoid' | 'tanh' | 'elu' | 'softmax' | 'log' | { leaky: number };

export type NodeOp =
  /** conv: kernel [kh, kw, in, out]; depthwise: kernel [kh, kw, C, 1]. */
  | { kind: 'conv'; depthwise: boolean; kernel: Weights; bias?: Weights; strides: [number, number]; padding: Padding; act: Activation }
  /** x [N, in] @ kernel [in, out] (+ bias). */
  | { kind: 'dense'; kernel: Weights; bias?: Weights; act: Activation }
  /** x * scale + shift along the last axis (unfolded batch-norm, preprocessing). */
  | { kind: 'affine'; scale: Weights; shift: Weights }
  | { kind: 'act'; act: Activation }
  | { kind: 'pool'; mode: 'avg' | 'max'; size: [number, number]; strides: [number, number]; padding: Padding }
  | { kind: 'reduce'; mode: 'mean' | 'max'; axes: number[]; keepDims: boolean }
  /** Zero padding, one [before, after] per axis (batch included). */
  | { kind: 'pad'; pads: [number, number][] }
  /** Target shape without the batch axis (-1 allowed once). */
  | { kind: 'reshape'; shape: number[] }
  /** Element-wise sum / difference / product of the inputs, or of the input and a constant. */
  | { kind: 'binary'; op: 'add' | 'sub' | 'mul'; constant?: { weights: Weights; first: boolean }; act: Activation }
  | { kind: 'concat'; axis: number; act: Activation }
  /** Keeps `size` entries of the last axis from `begin` (drops a background class). */
  | { kind: 'slice'; begin: number; size: number }
  /** Reverses the channel (last) axis: RGB <-> BGR. */
  | { kind: 'reverseChannels' }
  | { kind: 'identity' };

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

export function weights(data: Float32Array | number[], shape: number[]): Weights {
  return { data: data instanceof Float32Array ? data : Float32Array.from(data), shape };
}

/** A weight array transposed by `perm` (row-major, any rank). */
export function transposeWeights(w: Weights, perm: number[]): Weights {
  const shape = perm.map((p) => w.shape[p]);
  const strides = w.shape.map((_, i) => w.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const out = new Float32Array(w.data.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let a = 0; a < shape.length; a++) src += idx[a] * strides[perm[a]];
    out[o] = w.data[src];
    for (let a = shape.length - 1; a >= 0 && ++idx[a] === shape[a]; a--) idx[a] = 0;
  }
  return { data: out, shape };
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
