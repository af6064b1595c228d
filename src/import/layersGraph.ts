import * as tf from '../tf.js';
import { UsageError } from '../errors.js';
import { weights, type Activation, type Net, type NetNode, type NodeOp, type Weights } from '../engine/net.js';

/**
 * Translates a tf.LayersModel into the engine's Net, cut at the logits layer.
 * Why: tf.grad through LayersModel.apply goes through fused ops whose gradients also compute every
 * filter gradient (an order of magnitude slower), and some of their backward kernels are missing on wasm.
 * Batch-norm layers that directly follow a convolution are folded into it.
 */

type Cfg = Record<string, unknown>;
type AnyLayer = tf.layers.Layer;

function pair(v: unknown, fallback: number): [number, number] {
  if (Array.isArray(v)) return [v[0] as number, (v[1] ?? v[0]) as number];
  if (typeof v === 'number') return [v, v];
  return [fallback, fallback];
}

function inboundNames(layer: AnyLayer): string[] {
  const node = layer.inboundNodes[0];
  return node ? node.inboundLayers.map((l) => l.name) : [];
}

function toWeights(t: tf.Tensor): Weights {
  return weights(t.dataSync() as Float32Array, t.shape.slice());
}

function activation(name: unknown, layerName: string): Activation {
  const a = (name ?? 'linear') as string;
  if (['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'elu', 'softmax'].includes(a)) return a as Activation;
  // Keras's swish is x * sigmoid(x) (TF.js Layers: alpha 1), EfficientNet's activation.
  if (a === 'swish') return 'silu';
  throw new UsageError(`layer ${layerName}: activation "${a}" is not supported`);
}

/** Batch-norm as y = x * scale + shift, from gamma, beta, mean, variance. */
function bnAffine(layer: AnyLayer): { scale: Float32Array; shift: Float32Array } {
  const cfg = layer.getConfig() as Cfg;
  const w = layer.getWeights().map((t) => t.dataSync() as Float32Array);
  let i = 0;
  const gamma = cfg.scale !== false ? w[i++] : null;
  const beta = cfg.center !== false ? w[i++] : null;
  const mean = w[i++];
  const variance = w[i];
  const eps = (cfg.epsilon as number) ?? 1e-3;
  const scale = mean.map((_, c) => (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps));
  const shift = mean.map((m, c) => (beta ? beta[c] : 0) - m * scale[c]);
  return { scale, shift };
}

type ConvOp = Extract<NodeOp, { kind: 'conv' }>;

function convOp(layer: AnyLayer): ConvOp {
  const cfg = layer.getConfig() as Cfg;
  const depthwise = layer.getClassName() === 'DepthwiseConv2D';
  const w = layer.getWeights();
  const dilation = pair(cfg.dilation_rate ?? cfg.dilationRate, 1);
  const useBias = (cfg.use_bias ?? cfg.useBias) !== false && w.length > 1;
  // Keras's depthwise kernel [kh, kw, C, m] holds the same numbers as the Net's [kh, kw, 1, C * m].
  const [kh, kw, cin, m] = w[0].shape;
  return {
    kind: 'conv',
    group: depthwise ? cin : 1,
    kernel: depthwise ? weights(w[0].dataSync() as Float32Array, [kh, kw, 1, cin * m]) : toWeights(w[0]),
    bias: useBias ? toWeights(w[1]) : undefined,
    strides: pair(cfg.strides, 1),
    dilations: dilation,
    padding: cfg.padding === 'same' ? 'same' : 'valid',
    act: activation(cfg.activation, layer.name),
  };
}

/** Folds y = conv(x)*scale + shift into the conv's kernel and bias (scale is per output channel). */
function foldBn(op: ConvOp, bn: { scale: Float32Array; shift: Float32Array }): ConvOp {
  // The output channel is the kernel's last axis.
  const channels = bn.scale.length;
  const kernel = op.kernel.data.map((v, i) => v * bn.scale[i % channels]);
  const bias = bn.shift.map((s, c) => (op.bias ? op.bias.data[c] * bn.scale[c] : 0) + s);
  return { ...op, kernel: weights(kernel, op.kernel.shape), bias: weights(bias, [channels]) };
}

function zeroPadOp(layer: AnyLayer): NodeOp {
  const p = (layer.getConfig() as Cfg).padding;
  let rows: [number, number] = [1, 1];
  let cols: [number, number] = [1, 1];
  if (typeof p === 'number') rows = cols = [p, p];
  else if (Array.isArray(p)) {
    const [a, b] = p as unknown[];
    rows = Array.isArray(a) ? (a as [number, number]) : [a as number, a as number];
    cols = Array.isArray(b) ? (b as [number, number]) : [b as number, b as number];
  }
  return { kind: 'pad', pads: [[0, 0], rows, cols, [0, 0]] };
}

function poolOp(layer: AnyLayer, mode: 'avg' | 'max'): NodeOp {
  const cfg = layer.getConfig() as Cfg;
  const size = pair(cfg.pool_size ?? cfg.poolSize, 2);
  return { kind: 'pool', mode, size, strides: pair(cfg.strides ?? size, size[0]), padding: cfg.padding === 'same' ? 'same' : 'valid' };
}

/** Configurations the translation does not cover: refused by name rather than translated wrongly. */
function checkSupported(layer: AnyLayer): void {
  const cfg = layer.getConfig() as Cfg;
  const format = cfg.data_format ?? cfg.dataFormat;
  if (format === 'channels_first' || format === 'channelsFirst')
    throw new UsageError(`layer ${layer.name}: channels_first layers are not supported (the engine runs NHWC)`);
  if (layer.getClassName() === 'BatchNormalization') {
    const axis = cfg.axis as number | number[] | undefined;
    const a = Array.isArray(axis) ? axis : [axis ?? -1];
    if (a.length !== 1 || (a[0] !== -1 && a[0] !== 3 && a[0] !== (layer.inputSpec?.[0]?.ndim ?? 4) - 1))
      throw new UsageError(
        `layer ${layer.name}: batch normalization over axis ${JSON.stringify(axis)} is not supported (only the channel axis)`,
      );
  }
}

/** The Net operation of one layer (BN folding is handled by the caller). */
function layerOp(layer: AnyLayer): NodeOp {
  const cfg = layer.getConfig() as Cfg;
  const cls = layer.getClassName();
  switch (cls) {
    case 'Conv2D':
    case 'DepthwiseConv2D':
      return convOp(layer);
    case 'BatchNormalization': {
      const { scale, shift } = bnAffine(layer);
      return { kind: 'affine', scale: weights(scale, [scale.length]), shift: weights(shift, [shift.length]) };
    }
    case 'Dense': {
      const w = layer.getWeights();
      return {
        kind: 'dense',
        kernel: toWeights(w[0]),
        bias: w[1] ? toWeights(w[1]) : undefined,
        act: activation(cfg.activation, layer.name),
      };
    }
    case 'Activation':
      return { kind: 'act', act: activation(cfg.activation, layer.name) };
    case 'ReLU': {
      const max = cfg.max_value ?? cfg.maxValue;
      if (max != null && max !== 6)
        throw new UsageError(`layer ${layer.name}: ReLU with max_value ${String(max)} is not supported (only 6)`);
      return { kind: 'act', act: max === 6 ? 'relu6' : 'relu' };
    }
    case 'LeakyReLU':
      return { kind: 'act', act: { leaky: (cfg.alpha as number) ?? 0.3 } };
    case 'Softmax':
      return { kind: 'act', act: 'softmax' };
    case 'MaxPooling2D':
      return poolOp(layer, 'max');
    case 'AveragePooling2D':
      return poolOp(layer, 'avg');
    case 'GlobalAveragePooling2D':
      return { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: false };
    case 'GlobalMaxPooling2D':
      return { kind: 'reduce', mode: 'max', axes: [1, 2], keepDims: false };
    case 'ZeroPadding2D':
      return zeroPadOp(layer);
    case 'Reshape':
      return { kind: 'reshape', shape: (cfg.target_shape ?? cfg.targetShape) as number[] };
    case 'Flatten':
      return { kind: 'reshape', shape: [-1] };
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
      return { kind: 'identity' };
    case 'Add':
      return { kind: 'binary', op: 'add', act: 'linear' };
    case 'Multiply':
      return { kind: 'binary', op: 'mul', act: 'linear' };
    case 'Concatenate':
      return { kind: 'concat', axis: (cfg.axis as number) ?? -1, act: 'linear' };
    default:
      throw new UsageError(`layer ${layer.name}: layer type ${cls} is not supported by the attack engine`);
  }
}

/** The batch-norm layer that is the only consumer of a linear convolution, if any. */
function nextFoldableBn(layer: AnyLayer, target: string): AnyLayer | undefined {
  const cls = layer.getClassName();
  if (cls !== 'Conv2D' && cls !== 'DepthwiseConv2D') return undefined;
  if (layer.name === target) return undefined;
  const act = (layer.getConfig() as Cfg).activation;
  if (act !== undefined && act !== 'linear') return undefined;
  if (layer.outboundNodes.length !== 1) return undefined;
  const next = layer.outboundNodes[0].outboundLayer;
  return next.getClassName() === 'BatchNormalization' ? next : undefined;
}

/** Translates `model` up to and including `outputLayer` (default: the model's last layer). */
export function layersToNet(model: tf.LayersModel, outputLayer?: string): Net {
  const layers = model.layers;
  const target = outputLayer ?? layers[layers.length - 1].name;
  if (!layers.some((l) => l.name === target)) {
    const names = layers
      .slice(-5)
      .map((l) => l.name)
      .join(', ');
    throw new UsageError(`logits layer "${target}" is not in the model (last layers: ${names})`);
  }
  if (model.inputs.length !== 1) throw new UsageError('only single-input models are supported');
  // inputs[0].sourceLayer works for functional models and Sequential ones (whose layers omit the InputLayer).
  const input = model.inputs[0].sourceLayer.name;
  const nodes: NetNode[] = [];
  const folded = new Set<string>();
  for (const layer of layers) {
    const cls = layer.getClassName();
    if (cls === 'InputLayer' || folded.has(layer.name)) continue;
    checkSupported(layer);
    const inputs = inboundNames(layer);
    const bn = nextFoldableBn(layer, target);
    if (bn) {
      const { scale, shift } = bnAffine(bn);
      nodes.push({ name: bn.name, inputs, op: foldBn(convOp(layer), { scale, shift }) });
      folded.add(bn.name);
    } else {
      nodes.push({ name: layer.name, inputs, op: layerOp(layer) });
    }
    if (layer.name === target || (bn && bn.name === target)) break;
  }
  return { input, nodes, output: target };
}
