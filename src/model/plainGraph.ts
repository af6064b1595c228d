import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { inputGradConv, relu6InputGrad } from './inputgrad.js';

/**
 * A model as a list of plain-op steps: what every imported format (LayersModel, TFLite) compiles to.
 * The steps use unfused ops whose input gradients are fast on every backend (see inputgrad.ts).
 */

export type Fn = (inputs: tf.Tensor[]) => tf.Tensor;
export interface Step {
  name: string;
  inputs: string[];
  fn: Fn;
}
export interface PlainGraph {
  inputName: string;
  steps: Step[];
  output: string;
  /** Weights owned by the graph; disposed with it. */
  owned: tf.Tensor[];
}

/** Element-wise activation by its Keras name ('relu1' is TFLite's RELU_N1_TO_1). */
export function activation(name: unknown, where: string): (x: tf.Tensor) => tf.Tensor {
  switch (name ?? 'linear') {
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
    default:
      throw new UsageError(`${where}: activation "${String(name)}" is not supported`);
  }
}

export interface ConvSpec {
  kind: 'conv' | 'depthwise';
  /** [kh, kw, in, out] for conv; [kh, kw, C, 1] for depthwise. */
  kernel: tf.Tensor4D;
  bias: tf.Tensor1D | null;
  strides: [number, number];
  padding: 'same' | 'valid';
  act: (x: tf.Tensor) => tf.Tensor;
}

/** The conv step; registers the tensors it holds in `owned`. */
export function convFn(spec: ConvSpec, owned: tf.Tensor[]): Fn {
  const conv = inputGradConv(spec.kind, spec.kernel, spec.strides, spec.padding);
  owned.push(...conv.tensors, ...(spec.bias ? [spec.bias] : []));
  return ([x]) => {
    let y: tf.Tensor = conv.apply(x as tf.Tensor4D);
    if (spec.bias) y = tf.add(y, spec.bias);
    return spec.act(y);
  };
}

/** Index of the last step that reads each value (the output is read "after" the last step). */
const lastUses = new WeakMap<PlainGraph, Map<string, number>>();
function lastUse(g: PlainGraph): Map<string, number> {
  let m = lastUses.get(g);
  if (!m) {
    m = new Map();
    g.steps.forEach((s, i) => s.inputs.forEach((n) => m!.set(n, i)));
    m.set(g.output, g.steps.length);
    lastUses.set(g, m);
  }
  return m;
}

/**
 * Runs the compiled graph on a preprocessed batch. Outside a gradient tape, each activation is freed
 * after its last reader, so a forward pass holds a few activations instead of all of them (the
 * batch an evaluation can run grows accordingly).
 */
export function runPlainGraph(g: PlainGraph, x: tf.Tensor): tf.Tensor {
  const values = new Map<string, tf.Tensor>([[g.inputName, x]]);
  const free = !tf.engine().isTapeOn();
  const last = lastUse(g);
  g.steps.forEach((s, i) => {
    const ins = s.inputs.map((n) => {
      const t = values.get(n);
      if (!t) throw new Error(`internal: missing tensor ${n} for ${s.name}`);
      return t;
    });
    values.set(s.name, s.fn(ins));
    if (!free) return;
    for (const n of new Set(s.inputs)) {
      if (n === g.inputName || last.get(n) !== i) continue;
      const t = values.get(n)!;
      values.delete(n);
      // Identity steps alias their input: free a tensor only when no live name still holds it.
      if (![...values.values()].includes(t)) t.dispose();
    }
  });
  return values.get(g.output)!;
}
