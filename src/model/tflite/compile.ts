import * as flatbuffers from 'flatbuffers';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../../errors.js';
import { activation, convFn, type Fn, type PlainGraph, type Step } from '../plainGraph.js';
import { dequantize, intValues } from './dequantize.js';
import type { TfliteModel, TfliteOp, TfliteTensor } from './parse.js';
import * as fb from './schema.generated.js';

/**
 * Compiles a parsed TFLite model into the engine's plain-op graph, in float32: quantised weights are
 * dequantised and activation quantisation is dropped (QUANTIZE / DEQUANTIZE become identities), so
 * the result is the differentiable float network the quantised one approximates.
 */

const FUSED = ['linear', 'relu', 'relu1', 'relu6', 'tanh'];

export const SUPPORTED_OPERATORS = [
  'ADD', 'SUB', 'MUL', 'AVERAGE_POOL_2D', 'MAX_POOL_2D', 'CONCATENATION', 'CONV_2D', 'DEPTHWISE_CONV_2D',
  'FULLY_CONNECTED', 'MEAN', 'PAD', 'RESHAPE', 'SQUEEZE', 'SOFTMAX', 'RELU', 'RELU6', 'LOGISTIC', 'TANH',
  'QUANTIZE', 'DEQUANTIZE',
];

/** Pixel [0,255] -> model input: (pixel * scale + offset), from the input tensor's quantisation. */
export function inputPreprocess(m: TfliteModel): { scale: number; offset: number } | undefined {
  const t = m.tensors[m.inputs[0]];
  if (!t.quant || (t.type !== 'uint8' && t.type !== 'int8')) return undefined;
  // A uint8 input holds the pixel itself; an int8 input holds pixel - 128.
  const zero = t.quant.zeroPoint[0] ?? 0;
  const shift = t.type === 'int8' ? 128 : 0;
  return { scale: t.quant.scale[0], offset: -t.quant.scale[0] * (zero + shift) };
}

/**
 * The tensor holding the logits: the input of the SOFTMAX that produces the model output (through
 * any QUANTIZE / DEQUANTIZE), or the output itself when there is no softmax.
 */
export function logitsTensor(m: TfliteModel, name?: string): number {
  if (name !== undefined) {
    const t = m.tensors.find((x) => x.name === name);
    if (!t) throw new UsageError(`logits tensor "${name}" is not in the TFLite model (its output is "${m.tensors[m.outputs[0]].name}")`);
    return t.index;
  }
  const producer = new Map<number, TfliteOp>();
  for (const op of m.ops) for (const o of op.outputs) producer.set(o, op);
  let t = m.outputs[0];
  for (let op = producer.get(t); op && (op.name === 'QUANTIZE' || op.name === 'DEQUANTIZE'); op = producer.get(t)) t = op.inputs[0];
  const last = producer.get(t);
  return last?.name === 'SOFTMAX' ? last.inputs[0] : t;
}

interface Ctx {
  m: TfliteModel;
  owned: tf.Tensor[];
  where: string;
}

function constant(ctx: Ctx, index: number): tf.Tensor {
  const t = ctx.m.tensors[index];
  const v = tf.tensor(dequantize(t), t.shape.length ? t.shape : [1], 'float32');
  ctx.owned.push(v);
  return v;
}

function ints(ctx: Ctx, index: number): number[] {
  return intValues(ctx.m.tensors[index]);
}

function fused(code: number, where: string): (x: tf.Tensor) => tf.Tensor {
  if (code < 0 || code >= FUSED.length) throw new UsageError(`${where}: fused activation ${code} is not supported`);
  return activation(FUSED[code], where);
}

const padding = (p: number): 'same' | 'valid' => (p === 0 ? 'same' : 'valid');

/** An empty flatbuffer table: options read from it give the format's defaults. */
const EMPTY_TABLE = (() => {
  const b = new flatbuffers.Builder(16);
  b.startObject(0);
  b.finish(b.endObject());
  return new flatbuffers.ByteBuffer(b.asUint8Array());
})();

/** The operator's builtin options, or their defaults when the file omits them. */
function options<T extends { __init(i: number, bb: flatbuffers.ByteBuffer): T }>(op: TfliteOp, make: () => T): T {
  const o = op.raw.builtinOptions(make() as never) as T | null;
  return o ?? make().__init(EMPTY_TABLE.readInt32(0), EMPTY_TABLE);
}

function conv(ctx: Ctx, op: TfliteOp, depthwise: boolean): Fn {
  const o = depthwise ? options(op, () => new fb.DepthwiseConv2DOptions()) : options(op, () => new fb.Conv2DOptions());
  if (o.dilationHFactor() !== 1 || o.dilationWFactor() !== 1) throw new UsageError(`${ctx.where}: dilated convolutions are not supported`);
  const w = constant(ctx, op.inputs[1]);
  // TFLite filters: conv [out, kh, kw, in]; depthwise [1, kh, kw, channels * multiplier].
  let kernel: tf.Tensor4D;
  let kind: 'conv' | 'depthwise' = 'conv';
  if (depthwise) {
    const [, kh, kw, c] = w.shape;
    const channels = ctx.m.tensors[op.inputs[0]].shape[3];
    if (c === channels) {
      kernel = w.reshape([kh, kw, c, 1]);
      kind = 'depthwise';
    } else if (channels === 1) kernel = w.reshape([kh, kw, 1, c]); // one input channel: an ordinary conv
    else throw new UsageError(`${ctx.where}: depth multiplier ${c / channels} is not supported (only 1)`);
  } else kernel = tf.transpose(w, [1, 2, 3, 0]) as tf.Tensor4D;
  ctx.owned.push(kernel);
  const hasBias = op.inputs.length > 2 && op.inputs[2] >= 0;
  const bias = hasBias ? (constant(ctx, op.inputs[2]) as tf.Tensor1D) : null;
  return convFn(
    {
      kind,
      kernel,
      bias,
      strides: [o.strideH(), o.strideW()],
      padding: padding(o.padding()),
      act: fused(o.fusedActivationFunction(), ctx.where),
    },
    ctx.owned,
  );
}

/** Element-wise binary op; either side may be a constant. */
function binary(ctx: Ctx, op: TfliteOp, f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor): { fn: Fn; inputs: number[] } {
  const act = fused(options(op, () => new fb.ActivationOptions()).fusedActivationFunction(), ctx.where);
  const consts = op.inputs.map((i) => (ctx.m.tensors[i].data ? constant(ctx, i) : undefined));
  const live = op.inputs.filter((_, k) => !consts[k]);
  return {
    inputs: live,
    fn: (xs) => {
      let k = 0;
      const [a, b] = consts.map((c) => c ?? xs[k++]);
      return act(f(a, b));
    },
  };
}

function pool(ctx: Ctx, op: TfliteOp, kind: 'avg' | 'max'): Fn {
  const o = options(op, () => new fb.Pool2DOptions());
  const size: [number, number] = [o.filterHeight(), o.filterWidth()];
  const strides: [number, number] = [o.strideH(), o.strideW()];
  const act = fused(o.fusedActivationFunction(), ctx.where);
  const p = padding(o.padding());
  return ([x]) => act(kind === 'avg' ? tf.avgPool(x as tf.Tensor4D, size, strides, p) : tf.maxPool(x as tf.Tensor4D, size, strides, p));
}

/** TFLite shapes carry batch 1; the batch dimension of the running batch replaces it. */
function withBatch(shape: number[]): (x: tf.Tensor) => number[] {
  return (x) => (shape.length && (shape[0] === 1 || shape[0] === -1) ? [x.shape[0], ...shape.slice(1)] : [x.shape[0], -1]);
}

/** The step of one operator, and the activation tensors it reads (constants are baked in). */
function opStep(ctx: Ctx, op: TfliteOp): { fn: Fn; inputs: number[] } {
  const x = [op.inputs[0]];
  switch (op.name) {
    case 'QUANTIZE':
    case 'DEQUANTIZE':
      return { inputs: x, fn: ([t]) => t };
    case 'CONV_2D':
      return { inputs: x, fn: conv(ctx, op, false) };
    case 'DEPTHWISE_CONV_2D':
      return { inputs: x, fn: conv(ctx, op, true) };
    case 'FULLY_CONNECTED': {
      const o = options(op, () => new fb.FullyConnectedOptions());
      if (o.weightsFormat() !== 0) throw new UsageError(`${ctx.where}: shuffled FULLY_CONNECTED weights are not supported`);
      const w = constant(ctx, op.inputs[1]);
      const inputs = w.shape[1] as number;
      const wt = tf.transpose(w);
      ctx.owned.push(wt);
      const bias = op.inputs.length > 2 && op.inputs[2] >= 0 ? constant(ctx, op.inputs[2]) : null;
      const act = fused(o.fusedActivationFunction(), ctx.where);
      return {
        inputs: x,
        fn: ([t]) => {
          const y = tf.matMul(t.reshape([-1, inputs]) as tf.Tensor2D, wt as tf.Tensor2D);
          return act(bias ? tf.add(y, bias) : y);
        },
      };
    }
    case 'ADD':
      return binary(ctx, op, tf.add);
    case 'SUB':
      return binary(ctx, op, tf.sub);
    case 'MUL':
      return binary(ctx, op, tf.mul);
    case 'AVERAGE_POOL_2D':
      return { inputs: x, fn: pool(ctx, op, 'avg') };
    case 'MAX_POOL_2D':
      return { inputs: x, fn: pool(ctx, op, 'max') };
    case 'MEAN': {
      const axes = ints(ctx, op.inputs[1]);
      const keep = options(op, () => new fb.ReducerOptions()).keepDims();
      return { inputs: x, fn: ([t]) => tf.mean(t, axes, keep) };
    }
    case 'PAD': {
      const p = ints(ctx, op.inputs[1]);
      const pairs = Array.from({ length: p.length / 2 }, (_, i): [number, number] => [p[2 * i], p[2 * i + 1]]);
      return { inputs: x, fn: ([t]) => tf.pad(t, pairs) };
    }
    case 'RESHAPE': {
      const given = op.inputs.length > 1 && op.inputs[1] >= 0 && ctx.m.tensors[op.inputs[1]].data;
      const shape = given ? ints(ctx, op.inputs[1]) : ctx.m.tensors[op.outputs[0]].shape;
      const target = withBatch(shape);
      return { inputs: x, fn: ([t]) => t.reshape(target(t)) };
    }
    case 'SQUEEZE': {
      const dims = options(op, () => new fb.SqueezeOptions()).squeezeDimsArray();
      return { inputs: x, fn: ([t]) => tf.squeeze(t, dims && dims.length ? Array.from(dims) : undefined) };
    }
    case 'CONCATENATION': {
      const o = options(op, () => new fb.ConcatenationOptions());
      const act = fused(o.fusedActivationFunction(), ctx.where);
      return { inputs: op.inputs, fn: (ts) => act(tf.concat(ts, o.axis())) };
    }
    case 'SOFTMAX': {
      const beta = options(op, () => new fb.SoftmaxOptions()).beta() || 1;
      return { inputs: x, fn: ([t]) => tf.softmax(beta === 1 ? t : tf.mul(t, beta)) };
    }
    case 'RELU':
      return { inputs: x, fn: ([t]) => tf.relu(t) };
    case 'RELU6':
      return { inputs: x, fn: ([t]) => activation('relu6', ctx.where)(t) };
    case 'LOGISTIC':
      return { inputs: x, fn: ([t]) => tf.sigmoid(t) };
    case 'TANH':
      return { inputs: x, fn: ([t]) => tf.tanh(t) };
    default:
      throw new UsageError(`${ctx.where} is not supported by the TFLite importer (supported: ${SUPPORTED_OPERATORS.join(', ')})`);
  }
}

/** Builds the graph from the model input up to the logits tensor (ops after it are not compiled). */
export function compileTflite(m: TfliteModel, file: string, logitsName?: string): PlainGraph {
  if (m.inputs.length !== 1) throw new UsageError(`${file}: the TFLite model has ${m.inputs.length} inputs; only single-input models are supported`);
  const output = logitsTensor(m, logitsName);
  const owned: tf.Tensor[] = [];
  const steps: Step[] = [];
  try {
    for (const [i, op] of m.ops.entries()) {
      const ctx: Ctx = { m, owned, where: `${file}: operator ${i} (${op.name})` };
      const { fn, inputs } = opStep(ctx, op);
      const unknown = inputs.find((t) => t < 0 || t >= m.tensors.length);
      if (unknown !== undefined) throw new UsageError(`${ctx.where}: refers to missing tensor ${unknown}`);
      steps.push({ name: String(op.outputs[0]), inputs: inputs.map(String), fn });
      if (op.outputs.includes(output)) break;
    }
  } catch (e) {
    tf.dispose(owned);
    throw e;
  }
  if (!steps.some((s) => s.name === String(output))) {
    tf.dispose(owned);
    throw new UsageError(`${file}: no operator produces the logits tensor ${m.tensors[output].name}`);
  }
  return { inputName: String(m.inputs[0]), steps, output: String(output), owned };
}

/** The input tensor (for shapes and types in cards and messages). */
export function inputTensor(m: TfliteModel): TfliteTensor {
  return m.tensors[m.inputs[0]];
}
