import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { inputGradConv, maxPoolInputGrad, relu6InputGrad } from './inputgrad.js';
import type { Activation, Net, NodeOp, Weights } from './net.js';
import type { Fn, PlainGraph } from './plainGraph.js';

/** Runs a Net on TF.js: unfused ops whose input gradients are fast on every backend (inputgrad.ts). */

export function activationFn(a: Activation): (x: tf.Tensor) => tf.Tensor {
  if (typeof a === 'object') return (x) => tf.leakyRelu(x, a.leaky);
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
  }
}

function stepFn(name: string, op: NodeOp, tensor: (w: Weights) => tf.Tensor, owned: tf.Tensor[]): Fn {
  switch (op.kind) {
    case 'conv': {
      const conv = inputGradConv(op.depthwise ? 'depthwise' : 'conv', tensor(op.kernel) as tf.Tensor4D, op.strides, op.padding);
      owned.push(conv.tensors[1]);
      const bias = op.bias && tensor(op.bias);
      const act = activationFn(op.act);
      return ([x]) => act(bias ? tf.add(conv.apply(x as tf.Tensor4D), bias) : conv.apply(x as tf.Tensor4D));
    }
    case 'dense': {
      const w = tensor(op.kernel) as tf.Tensor2D;
      const bias = op.bias && tensor(op.bias);
      const act = activationFn(op.act);
      return ([x]) => {
        if (x.rank !== 2) throw new UsageError(`${name}: a dense layer on a rank-${x.rank} input is not supported (add a Flatten)`);
        const y = tf.matMul(x as tf.Tensor2D, w);
        return act(bias ? tf.add(y, bias) : y);
      };
    }
    case 'affine': {
      const scale = tensor(op.scale);
      const shift = tensor(op.shift);
      return ([x]) => tf.add(tf.mul(x, scale), shift);
    }
    case 'act':
      return ([x]) => activationFn(op.act)(x);
    case 'pool':
      return ([x]) =>
        op.mode === 'avg' ? tf.avgPool(x as tf.Tensor4D, op.size, op.strides, op.padding) : maxPoolInputGrad(x as tf.Tensor4D, op.size, op.strides, op.padding);
    case 'reduce':
      return ([x]) => (op.mode === 'mean' ? tf.mean(x, op.axes, op.keepDims) : tf.max(x, op.axes, op.keepDims));
    case 'pad':
      return ([x]) => tf.pad(x, op.pads);
    case 'reshape':
      return ([x]) => x.reshape([x.shape[0], ...op.shape]);
    case 'binary': {
      const f = op.op === 'add' ? tf.add : op.op === 'sub' ? tf.sub : tf.mul;
      const act = activationFn(op.act);
      const c = op.constant && tensor(op.constant.weights);
      if (c) return ([x]) => act(op.constant!.first ? f(c, x) : f(x, c));
      return (xs) => act(xs.slice(1).reduce((a, b) => f(a, b), xs[0]));
    }
    case 'concat': {
      const act = activationFn(op.act);
      return (xs) => act(tf.concat(xs, op.axis));
    }
    case 'slice':
      return ([x]) => x.slice([0, op.begin], [-1, op.size]);
    case 'reverseChannels':
      return ([x]) => tf.reverse(x, -1);
    case 'identity':
      return ([x]) => x;
  }
}

/** Builds the TF.js steps of `net`; its weights become tensors owned by the graph. */
export function netToTfGraph(net: Net): PlainGraph {
  const owned: tf.Tensor[] = [];
  const tensor = (w: Weights) => {
    const t = tf.tensor(w.data, w.shape, 'float32');
    owned.push(t);
    return t;
  };
  try {
    const steps = net.nodes.map((n) => ({ name: n.name, inputs: n.inputs, fn: stepFn(n.name, n.op, tensor, owned) }));
    return { inputName: net.input, steps, output: net.output, owned };
  } catch (e) {
    tf.dispose(owned);
    throw e;
  }
}
