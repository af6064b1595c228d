import * as tf from '../../tf.js';
import type { Net, NodeOp, Weights } from '../net.js';
import { OPS } from '../ops/registry.js';
import type { Fn, Shape, TfBuild } from '../ops/types.js';
import type { PlainGraph } from './plainGraph.js';
import { inferShapes } from '../shapes.js';
import { tfjsActivation } from '../ops/activation.js';

/** Runs a Net on TF.js: each node as its op module builds it (input gradients fast on every backend). */

/** Builds the TF.js steps of `net` for images of `inputShape`; its weights become tensors owned by the graph. */
export function netToTfGraph(net: Net, inputShape: Shape): PlainGraph {
  const shapes = inferShapes(net, inputShape);
  const owned: tf.Tensor[] = [];
  try {
    // Kept: the graph may be built lazily, inside the tf.tidy of its first run.
    const steps = net.nodes.map((n) => ({ name: n.name, inputs: n.inputs, fn: stepFn(n, shapes, builder(owned, tf.keep)) }));
    return { inputName: net.input, steps, output: net.output, owned };
  } catch (e) {
    tf.dispose(owned);
    throw e;
  }
}

/**
 * The steps of `net` with each node's weights made when it runs and freed after it: one pass (the
 * check of another runtime on a probe image) that never holds more than one node's weights in TF.js,
 * whose WebAssembly memory, once grown, stays with the process. Slow to run again: each run remakes
 * every weight tensor.
 */
export function netToPassingTfGraph(net: Net, inputShape: Shape, blockBytes = PASS_BLOCK_BYTES): PlainGraph {
  const shapes = inferShapes(net, inputShape);
  const steps = net.nodes.map((n) => ({
    name: n.name,
    inputs: n.inputs,
    fn: (inputs: tf.Tensor[]) => denseInBlocks(n, shapes, inputs, blockBytes) ?? passOnce(n, shapes, inputs),
  }));
  return { inputName: net.input, steps, output: net.output, owned: [] };
}

/** A dense kernel larger than this runs in blocks of output columns in a passing graph. */
const PASS_BLOCK_BYTES = 32 * 2 ** 20;

/** One node run with its weights made for the run and freed after it. */
function passOnce(n: Net['nodes'][number], shapes: Map<string, Shape>, inputs: tf.Tensor[]): tf.Tensor {
  const owned: tf.Tensor[] = [];
  try {
    const y = stepFn(n, shapes, builder(owned))(inputs);
    // A step may hand back one of its weights (a constant): that one outlives the step.
    return owned.includes(y) ? y.clone() : y;
  } finally {
    tf.dispose(owned);
  }
}

/**
 * A dense layer with a large kernel (VGG-16's first is 411 MB) as blocks of its output columns, each
 * block's kernel copied out and freed in turn, then its activation; undefined for any other node.
 */
function denseInBlocks(
  n: Net['nodes'][number],
  shapes: Map<string, Shape>,
  inputs: tf.Tensor[],
  blockBytes: number,
): tf.Tensor | undefined {
  const dense = n.op;
  if (dense.kind !== 'dense') return undefined;
  const { kernel, bias, act } = dense;
  const [din, dout] = kernel.shape;
  const cols = Math.max(1, Math.floor(blockBytes / (4 * din)));
  if (cols >= dout) return undefined;
  const parts: tf.Tensor[] = [];
  try {
    for (let j = 0; j < dout; j += cols) {
      const w = Math.min(cols, dout - j);
      const data = new Float32Array(din * w);
      for (let r = 0; r < din; r++) data.set(kernel.data.subarray(r * dout + j, r * dout + j + w), r * w);
      const block = { kernel: { data, shape: [din, w] }, ...(bias ? { bias: { data: bias.data.slice(j, j + w), shape: [w] } } : {}) };
      parts.push(passOnce({ ...n, op: { ...dense, ...block, act: 'linear' } }, shapes, inputs));
    }
    // The activation over the whole row (softmax is one).
    return tf.tidy(() => tfjsActivation(act)(tf.concat(parts, -1)));
  } finally {
    tf.dispose(parts);
  }
}

function builder(owned: tf.Tensor[], keep = <T extends tf.Tensor>(t: T) => t): TfBuild {
  const b: TfBuild = {
    tensor: (w: Weights) => b.own(tf.tensor(w.data, w.shape, 'float32')),
    own: (t) => {
      owned.push(keep(t));
      return t;
    },
  };
  return b;
}

function stepFn(n: Net['nodes'][number], shapes: Map<string, Shape>, b: TfBuild): Fn {
  const build = OPS[n.op.kind].tfjs as (op: NodeOp, b: TfBuild, inputs: Shape[]) => Fn;
  return build(
    n.op,
    b,
    n.inputs.map((i) => shapes.get(i)!),
  );
}
