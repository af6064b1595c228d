import * as tf from '../tf.js';
import type { FeatureModel } from './classifier.js';
import type { Net, NetNode, OpKind } from '../engine/net.js';
import { inferShapes } from '../engine/shapes.js';
import { netToTfGraph } from '../engine/tfjs/tfjsNet.js';
import { runPlainGraph } from '../engine/tfjs/plainGraph.js';
import type { Runtime } from '../engine/runtime.js';
import { tfjsRuntime } from '../engine/tfjs/tfjsRuntime.js';
import { UsageError } from '../errors.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * Inner layers as an output: the Net cut open at a set of nodes, their values flattened and joined
 * into one row per image, so that the engine's own forward and vector-Jacobian products (TF.js or the
 * ONNX Runtime export) run and differentiate "the activations of layer set L" with no new machinery.
 */

/** Element-wise followers of a convolution that still belong to its layer (batch-norm, activation). */
const FOLLOWERS: OpKind[] = ['affine', 'act', 'prelu'];

/**
 * The default layer set: every convolution's output, taken after the element-wise nodes that follow it
 * alone (an unfused batch-norm and activation), as Fast Feature Fool and GD-UAP read "the output of each
 * convolutional layer".
 */
export function convLayers(net: Net): string[] {
  const consumers = new Map<string, NetNode[]>();
  for (const n of net.nodes) for (const i of n.inputs) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const out: string[] = [];
  for (const n of net.nodes) {
    if (n.op.kind !== 'conv') continue;
    let at = n;
    for (;;) {
      const next = consumers.get(at.name) ?? [];
      if (next.length !== 1 || next[0].inputs.length !== 1 || !FOLLOWERS.includes(next[0].op.kind)) break;
      at = next[0];
    }
    out.push(at.name);
  }
  return out;
}

/** `net` with one output: the named nodes' values, each flattened, joined in the given order. */
export function featureNet(net: Net, layers: string[]): Net {
  const known = new Set(net.nodes.map((n) => n.name));
  const missing = layers.find((l) => !known.has(l));
  if (missing !== undefined)
    throw new UsageError(
      `{layers}: no layer named ${missing} (the network has ${[...known].slice(0, 8).join(', ')}${known.size > 8 ? ', ...' : ''})`,
    );
  if (layers.length === 0) throw new UsageError('{layers}: expected at least one layer (the network has no convolution to default to)');
  const flat: NetNode[] = layers.map((l, i) => ({ name: `features/flat${i}`, inputs: [l], op: { kind: 'reshape', shape: [-1] } }));
  const joined: NetNode = { name: 'features/out', inputs: flat.map((f) => f.name), op: { kind: 'concat', axis: -1, act: 'linear' } };
  return {
    input: net.input,
    nodes: [...net.nodes, ...flat, ...(layers.length > 1 ? [joined] : [])],
    output: layers.length > 1 ? joined.name : flat[0].name,
  };
}

/**
 * The feature model of `net` (a whole classifier Net, card nodes included): on the runtime `runtimeOf`
 * builds for the cut Net (the Node host passes ONNX Runtime), else on TF.js.
 */
export async function featureModel(
  net: Net,
  inputShape: ImageShape,
  layers: string[] | undefined,
  runtimeOf?: (cut: Net) => Promise<Runtime | null>,
): Promise<FeatureModel> {
  const chosen = layers ?? convLayers(net);
  const cut = featureNet(net, chosen);
  const shapes = inferShapes(net, inputShape);
  const sized = chosen.map((name) => ({ name, size: shapes.get(name)!.reduce((a, b) => a * b, 1) }));
  const total = sized.reduce((s, l) => s + l.size, 0);
  const graph = netToTfGraph(cut, inputShape);
  const logits = (x: tf.Tensor4D) => runPlainGraph(graph, x) as tf.Tensor2D;
  let runtime: Runtime | undefined;
  try {
    runtime = (await runtimeOf?.(cut)) ?? undefined;
  } catch {
    runtime = undefined; // the runtime cannot express this cut: TF.js computes it
  }
  runtime ??= tfjsRuntime({ inputShape, numClasses: total, logits });
  return {
    inputShape,
    numClasses: total,
    layers: sized,
    logits,
    runtime,
    dispose: () => {
      tf.dispose(graph.owned);
      void runtime?.dispose();
    },
  };
}
