import * as tf from '../tf.js';
import { UsageError } from '../errors.js';
import type { ModelCard } from '../classifier/card.js';
import type { Classifier } from '../classifier/classifier.js';
import { measureBatchLimits } from '../engine/memory.js';
import type { Net } from '../engine/net.js';
import { chain, weights, SLICE_END, type NetNode } from '../engine/net.js';
import { netToTfGraph } from '../engine/tfjs/tfjsNet.js';
import { featureModel } from '../classifier/features.js';
import { runPlainGraph } from '../engine/tfjs/plainGraph.js';
import { tfjsRuntime } from '../engine/tfjs/tfjsRuntime.js';

/**
 * What a model card adds around the network, as engine nodes: pixel preprocessing in front, the
 * output mapping behind. No file access here: the browser studio builds classifiers with it too.
 */

/** Wnids in the model's output order and in the reference (label-space) order, for outputMap.wnids. */
export interface OutputWnids {
  from: string[];
  reference: string[];
}

/** Pixel space [0,255] RGB -> the model's input, as the card declares: one per-channel affine map. */
export function preprocessNodes(card: Pick<ModelCard, 'preprocess' | 'inputShape'>): NetNode[] {
  const { scale = 1, offset = 0, mean, std, channelOrder = 'RGB' } = card.preprocess;
  const c = card.inputShape[2];
  // ((x - mean) / std) * scale + offset = x * a + b
  const a = Array.from({ length: c }, (_, i) => scale / (std?.[i] ?? 1));
  const b = Array.from({ length: c }, (_, i) => offset - (mean?.[i] ?? 0) * a[i]);
  const nodes: NetNode[] = [];
  if (channelOrder === 'BGR')
    nodes.push({ name: 'pre/bgr', inputs: [], op: { kind: 'slice', axis: -1, begin: -1, end: -SLICE_END, step: -1 } });
  if (a.some((v) => v !== 1) || b.some((v) => v !== 0))
    nodes.push({ name: 'pre/affine', inputs: [], op: { kind: 'affine', scale: weights(a, [c]), shift: weights(b, [c]) } });
  return nodes;
}

/** Raw outputs -> logits over the label space (flattened; log of probabilities; background dropped; DarkNet order mapped). */
export function outputNodes(card: Pick<ModelCard, 'name' | 'outputMap' | 'outputIsProbabilities'>, wnids?: OutputWnids): NetNode[] {
  const m = card.outputMap ?? {};
  const nodes: NetNode[] = [{ name: 'post/flatten', inputs: [], op: { kind: 'reshape', shape: [-1] } }];
  if (card.outputIsProbabilities) nodes.push({ name: 'post/log', inputs: [], op: { kind: 'act', act: 'log' } });
  if (m.dropFirst)
    nodes.push({ name: 'post/drop', inputs: [], op: { kind: 'slice', axis: -1, begin: m.dropFirst, end: SLICE_END, step: 1 } });
  if (m.wnids) {
    if (!wnids) throw new UsageError(`model card ${card.name}: outputMap.wnids needs the wnid lists`);
    const { from, reference: ref } = wnids;
    const pos = new Map(from.map((w, i) => [w, i]));
    // A permutation matrix instead of a gather: gather's gradient needs a kernel wasm lacks.
    const perm = new Float32Array(from.length * ref.length);
    ref.forEach((w, j) => {
      const i = pos.get(w);
      if (i === undefined) throw new UsageError(`model card ${card.name}: wnid ${w} missing from ${m.wnids}`);
      perm[i * ref.length + j] = 1;
    });
    nodes.push({ name: 'post/order', inputs: [], op: { kind: 'dense', kernel: weights(perm, [from.length, ref.length]), act: 'linear' } });
  }
  return nodes;
}

/**
 * The card's preprocessing and output mapping as two TF.js graphs, for models TF.js runs itself
 * (GraphModels; LayersModels being fine-tuned): pixels -> model input, raw output -> logits.
 */
export function cardAdapters(
  card: ModelCard,
  wnids?: OutputWnids,
): { pre: (x: tf.Tensor4D) => tf.Tensor; post: (y: tf.Tensor) => tf.Tensor2D; dispose(): void } {
  const pre = netToTfGraph(chain(preprocessNodes(card), { input: 'x', nodes: [], output: 'x' }, []), card.inputShape);
  // The raw output, flattened: the label space's classes plus any dropped ones, in the model's own order.
  const raw = (card.outputMap?.dropFirst ?? 0) + (wnids ? wnids.from.length : card.numClasses);
  const post = netToTfGraph(chain([], { input: 'y', nodes: [], output: 'y' }, outputNodes(card, wnids)), [raw]);
  return {
    pre: (x) => runPlainGraph(pre, x),
    post: (y) => runPlainGraph(post, y).reshape([y.shape[0], -1]) as tf.Tensor2D,
    dispose: () => tf.dispose([...pre.owned, ...post.owned]),
  };
}

/** Logits of a forward function, checked against the card's class count. */
export function checkedLogits(card: ModelCard, forward: (x: tf.Tensor4D) => tf.Tensor): (x: tf.Tensor4D) => tf.Tensor2D {
  return (x) =>
    tf.tidy(() => {
      const y = forward(x) as tf.Tensor2D;
      if (y.shape[1] !== card.numClasses)
        throw new UsageError(`model ${card.name}: gives ${y.shape[1]} outputs but the card says numClasses ${card.numClasses}`);
      return y;
    });
}

/**
 * A classifier that runs on TF.js: `forward` maps pixel-space images to raw logits, `release` frees
 * what it holds. Measures the batch limits at load (unless another runtime will run it), which also
 * proves the model differentiable.
 */
export async function tfjsClassifier(
  card: ModelCard,
  forward: (x: tf.Tensor4D) => tf.Tensor,
  release: () => void,
  labels?: string[],
  opts: { measure?: boolean } = {},
): Promise<Classifier> {
  const logits = checkedLogits(card, forward);
  const [h, w, c] = card.inputShape;
  let maxBatch;
  try {
    if (opts.measure ?? true) maxBatch = await measureBatchLimits(logits, [h, w, c]);
  } catch (e) {
    release();
    if (e instanceof UsageError) throw e;
    // Attacks need input gradients: find out at load time, not mid-run. (TF.js cannot differentiate
    // some converted graphs: fused convolutions with relu6, depthwise convolutions on wasm.)
    throw new UsageError(
      `model ${card.name}: TF.js cannot compute input gradients through this ${card.format} model (${(e as Error).message.split('\n')[0]})${card.format === 'graph' ? '; convert it as a LayersModel, or try {backend} cpu' : ''}`,
    );
  }
  return {
    name: card.name,
    inputShape: [h, w, c],
    numClasses: card.numClasses,
    labels,
    labelSpace: card.labelSpace ?? 'own',
    maxBatch,
    logits,
    runtime: tfjsRuntime({ inputShape: [h, w, c], numClasses: card.numClasses, logits }, maxBatch?.gradient),
    preprocess: card.preprocess,
    runsOn: `TF.js ${tf.getBackend()}`,
    dispose: release,
  };
}

/** A classifier on TF.js alone from a whole Net (card nodes included): what the browser studio runs. */
export async function netClassifier(card: ModelCard, net: Net, labels?: string[]): Promise<Classifier> {
  const graph = netToTfGraph(net, card.inputShape);
  const model = await tfjsClassifier(
    card,
    (x) => runPlainGraph(graph, x),
    () => tf.dispose(graph.owned),
    labels,
  );
  return { ...model, features: (layers) => featureModel(net, card.inputShape, layers) };
}
