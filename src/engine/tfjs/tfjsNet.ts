import * as tf from '../../tf.js';
import type { Net, NodeOp, Weights } from '../net.js';
import { OPS } from '../ops/registry.js';
import type { Fn, Shape, TfBuild } from '../ops/types.js';
import type { PlainGraph } from './plainGraph.js';
import { inferShapes } from '../shapes.js';

/** Runs a Net on TF.js: each node as its op module builds it (input gradients fast on every backend). */

/** Builds the TF.js steps of `net` for images of `inputShape`; its weights become tensors owned by the graph. */
export function netToTfGraph(net: Net, inputShape: Shape): PlainGraph {
  const shapes = inferShapes(net, inputShape);
  const owned: tf.Tensor[] = [];
  const b: TfBuild = {
    tensor: (w: Weights) => b.own(tf.tensor(w.data, w.shape, 'float32')),
    own: (t) => {
      owned.push(t);
      return t;
    },
  };
  try {
    const steps = net.nodes.map((n) => {
      const build = OPS[n.op.kind].tfjs as (op: NodeOp, b: TfBuild, inputs: Shape[]) => Fn;
      return {
        name: n.name,
        inputs: n.inputs,
        fn: build(
          n.op,
          b,
          n.inputs.map((i) => shapes.get(i)!),
        ),
      };
    });
    return { inputName: net.input, steps, output: net.output, owned };
  } catch (e) {
    tf.dispose(owned);
    throw e;
  }
}
