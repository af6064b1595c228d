import * as tf from '../../tf.js';
import type { Activation } from '../net.js';
import { storageAxis, type OnnxNode } from '../onnx/emit.js';
import { relu6InputGrad } from '../tfjs/inputgrad.js';

/**
 * Element-wise activations, shared by the 'act' node and the nodes that fuse one (conv, dense, binary,
 * concat): TF.js forward, ONNX forward, and the ONNX backward through them.
 */

const SQRT2 = Math.SQRT2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Exact GELU, x * Phi(x). */
const gelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, SQRT2))));

export function tfjsActivation(a: Activation): (x: tf.Tensor) => tf.Tensor {
  if (typeof a === 'object') {
    if ('leaky' in a) return (x) => tf.leakyRelu(x, a.leaky);
    if ('clip' in a) return (x) => tf.clipByValue(x, a.clip[0], a.clip[1]);
    if ('hardSigmoid' in a) return (x) => tf.clipByValue(tf.add(tf.mul(x, a.hardSigmoid[0]), a.hardSigmoid[1]), 0, 1);
    return (x) => tf.pow(x, a.pow);
  }
  switch (a) {
    case 'linear':
      return (x) => x;
    case 'relu':
      return (x) => tf.relu(x);
    case 'relu6':
      return (x) => relu6InputGrad(x);
    case 'relu1':
      return (x) => tf.clipByValue(x, -1, 1);
    case 'sigmoid':
      return (x) => tf.sigmoid(x);
    case 'tanh':
      return (x) => tf.tanh(x);
    case 'elu':
      return (x) => tf.elu(x);
    case 'softmax':
      return (x) => tf.softmax(x);
    case 'log':
      return (x) => tf.log(tf.maximum(x, 1e-30));
    case 'gelu':
      return gelu;
    case 'erf':
      return (x) => tf.erf(x);
    case 'sqrt':
      return (x) => tf.sqrt(x);
    case 'reciprocal':
      return (x) => tf.reciprocal(x);
    case 'exp':
      return (x) => tf.exp(x);
    case 'neg':
      return (x) => tf.neg(x);
    case 'hardSwish':
      return (x) => tf.mul(x, tf.clipByValue(tf.add(tf.div(x, 6), 0.5), 0, 1));
    case 'silu':
      return (x) => tf.mul(x, tf.sigmoid(x));
  }
}

/** The activation applied to ONNX value x (a node's output shape and layout). */
export function onnxActivation(n: OnnxNode<unknown>, x: string, a: Activation): string {
  const g = n.g;
  if (typeof a === 'object') {
    if ('leaky' in a) return g.op('LeakyRelu', [x], { alpha: a.leaky });
    if ('clip' in a) return g.op('Clip', [x, g.scalar(a.clip[0]), g.scalar(a.clip[1])]);
    if ('hardSigmoid' in a) return g.op('HardSigmoid', [x], { alpha: a.hardSigmoid[0], beta: a.hardSigmoid[1] });
    return g.op('Pow', [x, g.scalar(a.pow)]);
  }
  switch (a) {
    case 'linear':
      return x;
    case 'relu':
      return g.op('Relu', [x]);
    case 'relu6':
      return g.op('Clip', [x, g.scalar(0), g.scalar(6)]);
    case 'relu1':
      return g.op('Clip', [x, g.scalar(-1), g.scalar(1)]);
    case 'sigmoid':
      return g.op('Sigmoid', [x]);
    case 'tanh':
      return g.op('Tanh', [x]);
    case 'elu':
      return g.op('Elu', [x], { alpha: 1 });
    case 'softmax':
      return g.op('Softmax', [x], { axis: lastAxis(n) });
    case 'log':
      return g.op('Log', [g.op('Max', [x, g.scalar(1e-30)])]);
    case 'gelu':
      return g.op('Mul', [x, phi(n, x)]);
    case 'erf':
      return g.op('Erf', [x]);
    case 'sqrt':
      return g.op('Sqrt', [x]);
    case 'reciprocal':
      return g.op('Reciprocal', [x]);
    case 'exp':
      return g.op('Exp', [x]);
    case 'neg':
      return g.op('Neg', [x]);
    case 'hardSwish':
      return g.op('Mul', [x, g.op('HardSigmoid', [x], { alpha: 1 / 6, beta: 0.5 })]);
    case 'silu':
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
  }
}

/** The storage axis of the output's last Net axis (channels of an NCHW-stored value). */
const lastAxis = (n: OnnxNode<unknown>) => storageAxis(-1, n.rank(), n.outLayout);

/** The standard normal CDF, 0.5 * (1 + erf(x / sqrt 2)). */
function phi(n: OnnxNode<unknown>, x: string): string {
  const g = n.g;
  return g.op('Mul', [g.op('Add', [g.op('Erf', [g.op('Div', [x, g.scalar(SQRT2)])]), g.scalar(1)]), g.scalar(0.5)]);
}

/** Softmax backward over storage axis `axis`: (dy - sum(dy * y)) * y, per image. */
export function softmaxBackward(n: OnnxNode<unknown>, dy: string, y: string, axis: number): string {
  const dot = n.g.op('ReduceSum', [n.perImage(dy, y), n.g.ints([axis])], { keepdims: 1 });
  return n.perImage(n.g.op('Sub', [dy, dot]), y);
}

/** The name activation factors' values start with (activationFactor). */
export const FACTOR = 'factor';

/**
 * The factor f of an element-wise activation's backward, dx = dy * f, from its input x and output y:
 * a 0/1 mask left boolean (`mask`: cast to floats where it multiplies, so that it can be cut up at a
 * quarter of the bytes), or floats; undefined where dx = dy (linear). Masks read the OUTPUT where they
 * can (0 < y < 6 exactly when 0 < x < 6, etc.), so the pre-activation is rarely needed and ONNX Runtime
 * can fuse the activation into its producer. Not for softmax and neg (no per-element factor). Float
 * factors, and masks once cast, are values named 'factor_<n>': profiles and bench:vjp-profile's
 * rewrites (bench/factorPasses.ts) find the products with them by that name.
 */
export function activationFactor(
  n: OnnxNode<unknown>,
  x: string,
  y: string,
  a: Exclude<Activation, 'softmax' | 'neg'>,
): { value: string; mask: boolean } | undefined {
  const g = n.g;
  const floats = (type: string, inputs: string[]) => ({ value: g.op(type, inputs, {}, FACTOR), mask: false });
  const mask = (value: string) => ({ value, mask: true });
  const between = (v: string, lo: number, hi: number) => g.op('And', [g.op('Greater', [v, g.scalar(lo)]), g.op('Less', [v, g.scalar(hi)])]);
  if (typeof a === 'object') {
    if ('leaky' in a) return floats('Where', [g.op('Greater', [y, g.scalar(0)]), g.scalar(1), g.scalar(a.leaky)]);
    if ('clip' in a) return mask(between(y, a.clip[0], a.clip[1]));
    if ('hardSigmoid' in a) return floats('Mul', [g.op('Cast', [between(y, 0, 1)], { to: 1 }), g.scalar(a.hardSigmoid[0])]);
    return floats('Mul', [g.op('Pow', [x, g.scalar(a.pow - 1)]), g.scalar(a.pow)]);
  }
  switch (a) {
    case 'linear':
      return undefined;
    case 'relu':
      return mask(g.op('Greater', [y, g.scalar(0)]));
    case 'relu6':
      return mask(between(y, 0, 6));
    case 'relu1':
      return mask(between(y, -1, 1));
    case 'sigmoid':
      return floats('Mul', [y, g.op('Sub', [g.scalar(1), y])]);
    case 'tanh':
      return floats('Sub', [g.scalar(1), g.op('Mul', [y, y])]);
    case 'elu':
      return floats('Where', [g.op('Greater', [y, g.scalar(0)]), g.scalar(1), g.op('Add', [y, g.scalar(1)])]);
    case 'log': {
      const inRange = g.op('Cast', [g.op('Greater', [x, g.scalar(1e-30)])], { to: 1 });
      return floats('Div', [inRange, g.op('Max', [x, g.scalar(1e-30)])]);
    }
    case 'gelu': {
      // d/dx x Phi(x) = Phi(x) + x phi(x)
      const density = g.op('Mul', [g.op('Exp', [g.op('Mul', [g.op('Mul', [x, x]), g.scalar(-0.5)])]), g.scalar(INV_SQRT_2PI)]);
      return floats('Add', [phi(n, x), g.op('Mul', [x, density])]);
    }
    case 'erf':
      return floats('Mul', [g.op('Exp', [g.op('Neg', [g.op('Mul', [x, x])])]), g.scalar(2 / Math.sqrt(Math.PI))]);
    case 'sqrt':
      return floats('Div', [g.scalar(0.5), y]);
    case 'reciprocal':
      return floats('Neg', [g.op('Mul', [y, y])]);
    case 'exp':
      return { value: y, mask: false };
    case 'hardSwish': {
      // d/dx x h(x) = h(x) + x/6 on (-3, 3)
      const h = g.op('HardSigmoid', [x], { alpha: 1 / 6, beta: 0.5 });
      const slope = g.op('Mul', [g.op('Cast', [between(x, -3, 3)], { to: 1 }), g.op('Div', [x, g.scalar(6)])]);
      return floats('Add', [h, slope]);
    }
    case 'silu': {
      // d/dx x s(x) = s + x s (1 - s) = y + s (1 - y): one factor per image, one product per backward row
      // (as a Sigmoid node and a Mul, each row went through the product rule's two branches and a Sum).
      const s = g.op('Sigmoid', [x]);
      return floats('Add', [y, g.op('Mul', [s, g.op('Sub', [g.scalar(1), y])])]);
    }
  }
}

/** A factor of activationFactor as floats. */
export const factorFloats = (n: OnnxNode<unknown>, f: { value: string; mask: boolean }): string =>
  f.mask ? n.g.op('Cast', [f.value], { to: 1 }, FACTOR) : f.value;

/** dy -> dx through an activation whose input is x and output y (the node's output shape and layout). */
export function onnxActivationBackward(n: OnnxNode<unknown>, dy: string, x: string, y: string, a: Activation): string {
  if (a === 'softmax') return softmaxBackward(n, dy, y, lastAxis(n));
  if (a === 'neg') return n.g.op('Neg', [dy]);
  const f = activationFactor(n, x, y, a);
  return f ? n.perImage(dy, factorFloats(n, f)) : dy;
}

/**
 * Whether an activation and its derivative are finite on every finite input (no log, root, reciprocal
 * or power; no exponential that can overflow): what padded lanes of a blocked value may go through.
 */
export function finiteEverywhere(a: Activation): boolean {
  if (typeof a === 'object') return !('pow' in a);
  return !['softmax', 'log', 'sqrt', 'reciprocal', 'exp'].includes(a);
}

/**
 * Every activation, with the input range where its derivative is smooth enough for finite
 * differences (the generated tests differentiate each one).
 */
export const ACTIVATIONS: [Activation, [number, number]?][] = [
  ['linear'],
  ['relu'],
  ['relu6', [-2, 8]],
  ['relu1'],
  ['sigmoid'],
  ['tanh'],
  ['elu'],
  ['softmax'],
  ['log', [0.2, 3]],
  ['gelu'],
  ['erf'],
  ['sqrt', [0.2, 3]],
  ['reciprocal', [0.3, 3]],
  ['exp'],
  ['neg'],
  ['hardSwish', [-5, 5]],
  ['silu'],
  [{ leaky: 0.2 }],
  [{ clip: [-0.5, 1.5] }],
  [{ hardSigmoid: [0.2, 0.5] }],
  [{ pow: 2 }],
  [{ pow: 3 }],
];

/** A readable name for an activation (test titles, messages). */
export function activationName(a: Activation): string {
  return typeof a === 'string' ? a : JSON.stringify(a);
}
