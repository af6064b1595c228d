import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { relu6InputGrad } from './inputgrad.js';
import { activation, convFn, type ConvSpec, type Fn, type PlainGraph, type Step } from './plainGraph.js';

/**
 * Turns a tf.LayersModel into a forward function of plain, unfused ops, cut at the logits layer.
 * Why: tf.grad through LayersModel.apply goes through fused ops whose gradients also compute every
 * filter gradient (about 10x slower), and some of their backward kernels are missing on wasm.
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

/** Batch-norm as y = x * scale + shift, computed once from gamma, beta, mean, variance. */
function bnAffine(layer: AnyLayer): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
  const cfg = layer.getConfig() as Cfg;
  const w = layer.getWeights();
  let i = 0;
  const gamma = cfg.scale !== false ? w[i++] : null;
  const beta = cfg.center !== false ? w[i++] : null;
  const mean = w[i++];
  const variance = w[i++];
  const eps = (cfg.epsilon as number) ?? 1e-3;
  return tf.tidy(() => {
    const inv = tf.rsqrt(tf.add(variance, eps));
    const scale = (gamma ? tf.mul(gamma, inv) : inv) as tf.Tensor1D;
    const shift = tf.sub(beta ?? tf.zerosLike(mean), tf.mul(mean, scale)) as tf.Tensor1D;
    return { scale, shift };
  });
}

function convSpec(layer: AnyLayer): ConvSpec {
  const cfg = layer.getConfig() as Cfg;
  const cls = layer.getClassName();
  const w = layer.getWeights();
  const dilation = pair(cfg.dilation_rate ?? cfg.dilationRate, 1);
  if (dilation[0] !== 1 || dilation[1] !== 1) throw new UsageError(`layer ${layer.name}: dilated convolutions are not supported`);
  const kernel = w[0].clone() as tf.Tensor4D;
  if (cls === 'DepthwiseConv2D' && kernel.shape[3] !== 1)
    throw new UsageError(`layer ${layer.name}: depthwise channel multiplier ${kernel.shape[3]} is not supported (only 1)`);
  const useBias = (cfg.use_bias ?? cfg.useBias) !== false && w.length > 1;
  return {
    kind: cls === 'DepthwiseConv2D' ? 'depthwise' : 'conv',
    kernel,
    bias: useBias ? (w[1].clone() as tf.Tensor1D) : null,
    strides: pair(cfg.strides, 1),
    padding: cfg.padding === 'same' ? 'same' : 'valid',
    act: activation(cfg.activation, `layer ${layer.name}`),
  };
}

/** Folds y = conv(x)*scale + shift into the conv's kernel and bias (scale is per output channel). */
function foldBn(spec: ConvSpec, bn: { scale: tf.Tensor1D; shift: tf.Tensor1D }): ConvSpec {
  const kernel = tf.tidy(() =>
    spec.kind === 'conv'
      ? tf.mul(spec.kernel, bn.scale)
      : tf.mul(spec.kernel, bn.scale.reshape([1, 1, -1, 1])),
  ) as tf.Tensor4D;
  const bias = tf.tidy(() => (spec.bias ? tf.add(tf.mul(spec.bias, bn.scale), bn.shift) : bn.shift.clone())) as tf.Tensor1D;
  tf.dispose([spec.kernel, spec.bias ?? [], bn.scale, bn.shift]);
  return { ...spec, kernel, bias };
}

function poolFn(layer: AnyLayer, kind: 'max' | 'avg'): Fn {
  const cfg = layer.getConfig() as Cfg;
  const size = pair(cfg.pool_size ?? cfg.poolSize, 2);
  const strides = pair(cfg.strides ?? size, size[0]);
  const padding = cfg.padding === 'same' ? 'same' : 'valid';
  return ([x]) =>
    kind === 'max'
      ? tf.maxPool(x as tf.Tensor4D, size, strides, padding)
      : tf.avgPool(x as tf.Tensor4D, size, strides, padding);
}

function zeroPadFn(layer: AnyLayer): Fn {
  const p = (layer.getConfig() as Cfg).padding;
  let rows: [number, number] = [1, 1];
  let cols: [number, number] = [1, 1];
  if (typeof p === 'number') rows = cols = [p, p];
  else if (Array.isArray(p)) {
    const [a, b] = p as unknown[];
    rows = Array.isArray(a) ? (a as [number, number]) : [a as number, a as number];
    cols = Array.isArray(b) ? (b as [number, number]) : [b as number, b as number];
  }
  return ([x]) => tf.pad(x, [[0, 0], rows, cols, [0, 0]]);
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
      throw new UsageError(`layer ${layer.name}: batch normalization over axis ${JSON.stringify(axis)} is not supported (only the channel axis)`);
  }
}

/** Builds the plain-op function of one layer (BN folding is handled by the caller). */
function layerFn(layer: AnyLayer, owned: tf.Tensor[]): Fn {
  const cfg = layer.getConfig() as Cfg;
  const cls = layer.getClassName();
  switch (cls) {
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      return convFn(convSpec(layer), owned);
    }
    case 'BatchNormalization': {
      const { scale, shift } = bnAffine(layer);
      owned.push(scale, shift);
      return ([x]) => tf.add(tf.mul(x, scale), shift);
    }
    case 'Dense': {
      const w = layer.getWeights().map((t) => t.clone());
      owned.push(...w);
      const act = activation(cfg.activation, `layer ${layer.name}`);
      return ([x]) => {
        if (x.rank !== 2) throw new UsageError(`layer ${layer.name}: Dense on a rank-${x.rank} input is not supported (add a Flatten)`);
        return act(w[1] ? tf.add(tf.matMul(x as tf.Tensor2D, w[0] as tf.Tensor2D), w[1]) : tf.matMul(x as tf.Tensor2D, w[0] as tf.Tensor2D));
      };
    }
    case 'Activation':
      return ([x]) => activation(cfg.activation, `layer ${layer.name}`)(x);
    case 'ReLU': {
      const max = cfg.max_value ?? cfg.maxValue;
      return ([x]) => (max === 6 ? relu6InputGrad(x) : max != null ? tf.clipByValue(x, 0, max as number) : tf.relu(x));
    }
    case 'LeakyReLU': {
      const alpha = (cfg.alpha as number) ?? 0.3;
      return ([x]) => tf.leakyRelu(x, alpha);
    }
    case 'Softmax':
      return ([x]) => tf.softmax(x);
    case 'MaxPooling2D':
      return poolFn(layer, 'max');
    case 'AveragePooling2D':
      return poolFn(layer, 'avg');
    case 'GlobalAveragePooling2D':
      return ([x]) => tf.mean(x, [1, 2]);
    case 'GlobalMaxPooling2D':
      return ([x]) => tf.max(x, [1, 2]);
    case 'ZeroPadding2D':
      return zeroPadFn(layer);
    case 'Reshape': {
      const target = (cfg.target_shape ?? cfg.targetShape) as number[];
      return ([x]) => x.reshape([x.shape[0], ...target]);
    }
    case 'Flatten':
      return ([x]) => x.reshape([x.shape[0], -1]);
    case 'Dropout':
    case 'SpatialDropout2D':
    case 'GaussianNoise':
      return ([x]) => x;
    case 'Add':
      return (xs) => tf.addN(xs);
    case 'Multiply':
      return (xs) => xs.reduce((a, b) => tf.mul(a, b));
    case 'Concatenate':
      return (xs) => tf.concat(xs, (cfg.axis as number) ?? -1);
    default:
      throw new UsageError(`layer ${layer.name}: layer type ${cls} is not supported by the attack engine`);
  }
}

/** Compiles `model` up to and including `outputLayer` (default: the model's last layer). */
export function compileLayersModel(model: tf.LayersModel, outputLayer?: string): PlainGraph {
  const layers = model.layers;
  const target = outputLayer ?? layers[layers.length - 1].name;
  if (!layers.some((l) => l.name === target)) {
    const names = layers.slice(-5).map((l) => l.name).join(', ');
    throw new UsageError(`logits layer "${target}" is not in the model (last layers: ${names})`);
  }
  if (model.inputs.length !== 1) throw new UsageError('only single-input models are supported');
  // inputs[0].sourceLayer works for functional models and Sequential ones (whose layers omit the InputLayer).
  const inputName = model.inputs[0].sourceLayer.name;
  const owned: tf.Tensor[] = [];
  const steps: Step[] = [];
  const folded = new Set<string>();
  for (const layer of layers) {
    const cls = layer.getClassName();
    if (cls === 'InputLayer' || folded.has(layer.name)) continue;
    checkSupported(layer);
    const inputs = inboundNames(layer);
    const bn = nextFoldableBn(layer, target);
    if (bn) {
      steps.push({ name: bn.name, inputs, fn: convFn(foldBn(convSpec(layer), bnAffine(bn)), owned) });
      folded.add(bn.name);
    } else {
      steps.push({ name: layer.name, inputs, fn: layerFn(layer, owned) });
    }
    if (layer.name === target || (bn && bn.name === target)) break;
  }
  return { inputName, steps, output: target, owned };
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
