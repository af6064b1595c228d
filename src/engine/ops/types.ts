import type * as tf from '../../tf.js';
import type { OpKind, OpOf, Weights } from '../net.js';
import type { OnnxNode } from '../onnx/emit.js';
import type { Layout } from '../onnx/layout.js';
import type { Shape } from '../net.js';

export type { Layout, Shape };

/**
 * What one kind of Net node is: its shape rule, how TF.js runs it (with input gradients that are fast
 * and correct on every backend), how it is written to ONNX, its hand-built vector-Jacobian product for
 * ONNX Runtime (which has no autodiff), and small configurations that exercise it. Each kind lives in
 * one module of this folder and is listed once in registry.ts; the per-op tests and the start-up
 * self-check network are generated from `samples`, so no op ships untested.
 */

/** A TF.js step: input tensors (batch first) -> output tensor. */
export type Fn = (inputs: tf.Tensor[]) => tf.Tensor;

/** What an op's TF.js builder gets: weights as tensors owned (and disposed) by the graph. */
export interface TfBuild {
  tensor(w: Weights): tf.Tensor;
  /** A tensor the op made itself (e.g. a flipped filter) that the graph must dispose. */
  own<T extends tf.Tensor>(t: T): T;
}

/**
 * 'nchw' / 'plain' / 'nchwc': the layout the op needs for its rank-4 inputs (and writes its output in);
 * 'any': it works in either (the walker keeps what it has).
 */
export type LayoutNeed = Layout | 'any';

export interface OnnxOp<O> {
  /** `block`: ONNX Runtime's channel block where the graph may hold blocked values, else 0. */
  layout: LayoutNeed | ((op: O, inShapes: Shape[], block: number) => LayoutNeed);
  /**
   * Whether the op, on these inputs, may run on blocked values ('any' ops): element-wise lane by lane
   * (no axis, no broadcasting over channels, no constant laid out per channel), or joining whole
   * channel blocks (concat). `padded`: some input's
   * channels fill their last block only partly; the padding lanes then hold whatever the op makes of
   * them, so the op (and its backward factors) must stay finite on any finite input (a NaN there would
   * reach real channels through a convolution's zero weights).
   */
  blocked?: (op: O, inShapes: Shape[], padded: boolean) => boolean;
  /** Writes the forward nodes; returns the output value (in `node.outLayout`). */
  forward(node: OnnxNode<O>): string;
  /**
   * Writes the vector-Jacobian product: dy holds K cotangent rows per image ([N*K, ...], in the output's
   * layout); returns dx per input (in that input's layout), or null where the input gets no gradient.
   */
  backward(node: OnnxNode<O>, dy: string): (string | null)[];
}

export interface Sample<O> {
  name: string;
  op: O;
  /** Input shapes without the batch axis. */
  inputs: Shape[];
  /**
   * Where the input values are drawn from (default [-2, 2]); ops that are only smooth away from some
   * points (sqrt, reciprocal, log) take positive inputs.
   */
  range?: [number, number];
  /**
   * Also a branch of the start-up self-check (which takes each kind's first sample): a construction
   * that leans on what a runtime may change between versions (ONNX Runtime's blocked kernels).
   */
  check?: boolean;
}

export interface OpDef<K extends OpKind> {
  kind: K;
  /** Output shape; throws a message naming what does not fit. */
  shape(op: OpOf<K>, inputs: Shape[]): Shape;
  /** The TF.js step, for inputs of the given shapes (batch excluded; the batch size may vary per call). */
  tfjs(op: OpOf<K>, b: TfBuild, inputs: Shape[]): Fn;
  onnx: OnnxOp<OpOf<K>>;
  samples: Sample<OpOf<K>>[];
}

/** Deterministic weights for samples and self-checks. */
export function sampleWeights(shape: number[], seed: number, scale = 0.6): Weights {
  const n = shape.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 3.7 + i * 0.91) * scale), shape };
}

export const size = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

/** An axis given negative-from-the-end, as a non-negative index into a shape of `rank` axes. */
export const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);
