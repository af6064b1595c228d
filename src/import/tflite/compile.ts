import * as flatbuffers from 'flatbuffers';
import { UsageError } from '../../errors.js';
import {
  transposeWeights,
  weights,
  type Activation,
  type Net,
  type NetNode,
  type NodeOp,
  type Padding,
  type Weights,
} from '../../engine/net.js';
import { dequantize, intValues } from './dequantize.js';
import type { TfliteModel, TfliteOp, TfliteTensor } from './parse.js';
import * as fb from './schema.generated.js';

/**
 * Translates a parsed TFLite model into the engine's Net, in float32: quantised weights are
 * dequantised and activation quantisation is dropped (QUANTIZE / DEQUANTIZE become identities), so
 * the result is the differentiable float network the quantised one approximates.
 */

const FUSED: Activation[] = ['linear', 'relu', 'relu1', 'relu6', 'tanh'];

export const SUPPORTED_OPERATORS = [
  'ADD',
  'SUB',
  'MUL',
  'AVERAGE_POOL_2D',
  'MAX_POOL_2D',
  'CONCATENATION',
  'CONV_2D',
  'DEPTHWISE_CONV_2D',
  'FULLY_CONNECTED',
  'MEAN',
  'PAD',
  'RESHAPE',
  'SQUEEZE',
  'SOFTMAX',
  'RELU',
  'RELU6',
  'LOGISTIC',
  'TANH',
  'QUANTIZE',
  'DEQUANTIZE',
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
  where: string;
}

function constant(ctx: Ctx, index: number): Weights {
  const t = ctx.m.tensors[index];
  return weights(dequantize(t), t.shape.length ? t.shape : [1]);
}

function ints(ctx: Ctx, index: number): number[] {
  return intValues(ctx.m.tensors[index]);
}

function fused(code: number, where: string): Activation {
  if (code < 0 || code >= FUSED.length) throw new UsageError(`${where}: fused activation ${code} is not supported`);
  return FUSED[code];
}

const padding = (p: number): Padding => (p === 0 ? 'same' : 'valid');

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

function conv(ctx: Ctx, op: TfliteOp, depthwise: boolean): NodeOp {
  const o = depthwise ? options(op, () => new fb.DepthwiseConv2DOptions()) : options(op, () => new fb.Conv2DOptions());
  const w = constant(ctx, op.inputs[1]);
  // TFLite filters: conv [out, kh, kw, in]; depthwise [1, kh, kw, channels * multiplier], which holds
  // the same numbers as the Net's [kh, kw, 1, channels * multiplier] (group = channels).
  let kernel: Weights;
  let group = 1;
  if (depthwise) {
    const [, kh, kw, c] = w.shape;
    kernel = { data: w.data, shape: [kh, kw, 1, c] };
    group = ctx.m.tensors[op.inputs[0]].shape[3];
  } else kernel = transposeWeights(w, [1, 2, 3, 0]);
  const hasBias = op.inputs.length > 2 && op.inputs[2] >= 0;
  return {
    kind: 'conv',
    group,
    kernel,
    bias: hasBias ? constant(ctx, op.inputs[2]) : undefined,
    strides: [o.strideH(), o.strideW()],
    dilations: [o.dilationHFactor(), o.dilationWFactor()],
    padding: padding(o.padding()),
    act: fused(o.fusedActivationFunction(), ctx.where),
  };
}

function pool(ctx: Ctx, op: TfliteOp, mode: 'avg' | 'max'): NodeOp[] {
  const o = options(op, () => new fb.Pool2DOptions());
  const p: NodeOp = {
    kind: 'pool',
    mode,
    size: [o.filterHeight(), o.filterWidth()],
    strides: [o.strideH(), o.strideW()],
    padding: padding(o.padding()),
  };
  const act = fused(o.fusedActivationFunction(), ctx.where);
  return act === 'linear' ? [p] : [p, { kind: 'act', act }];
}

/** TFLite shapes carry batch 1; the running batch replaces it. */
function withoutBatch(shape: number[]): number[] {
  return shape.length && (shape[0] === 1 || shape[0] === -1) ? shape.slice(1) : [-1];
}

/**
 * The Net operations of one operator (a pooling with a fused activation takes two) and the
 * activation tensors it reads (constants are baked in).
 */
function opNodes(ctx: Ctx, op: TfliteOp): { ops: NodeOp[]; inputs: number[] } {
  const x = [op.inputs[0]];
  const one = (o: NodeOp, inputs = x) => ({ ops: [o], inputs });
  switch (op.name) {
    case 'QUANTIZE':
    case 'DEQUANTIZE':
      return one({ kind: 'identity' });
    case 'CONV_2D':
      return one(conv(ctx, op, false));
    case 'DEPTHWISE_CONV_2D':
      return one(conv(ctx, op, true));
    case 'FULLY_CONNECTED': {
      const o = options(op, () => new fb.FullyConnectedOptions());
      if (o.weightsFormat() !== 0) throw new UsageError(`${ctx.where}: shuffled FULLY_CONNECTED weights are not supported`);
      const w = constant(ctx, op.inputs[1]);
      const dense: NodeOp = {
        kind: 'dense',
        kernel: transposeWeights(w, [1, 0]),
        bias: op.inputs.length > 2 && op.inputs[2] >= 0 ? constant(ctx, op.inputs[2]) : undefined,
        act: fused(o.fusedActivationFunction(), ctx.where),
      };
      // FULLY_CONNECTED flattens its input to [-1, in].
      return {
        ops: ctx.m.tensors[op.inputs[0]].shape.length === 2 ? [dense] : [{ kind: 'reshape', shape: [w.shape[1]] }, dense],
        inputs: x,
      };
    }
    case 'ADD':
    case 'SUB':
    case 'MUL': {
      const act = fused(options(op, () => new fb.ActivationOptions()).fusedActivationFunction(), ctx.where);
      const kind = op.name === 'ADD' ? 'add' : op.name === 'SUB' ? 'sub' : 'mul';
      const k = op.inputs.findIndex((i) => ctx.m.tensors[i].data);
      if (k < 0) return one({ kind: 'binary', op: kind, act }, op.inputs);
      return one({ kind: 'binary', op: kind, act, constant: { weights: constant(ctx, op.inputs[k]), first: k === 0 } }, [op.inputs[1 - k]]);
    }
    case 'AVERAGE_POOL_2D':
      return { ops: pool(ctx, op, 'avg'), inputs: x };
    case 'MAX_POOL_2D':
      return { ops: pool(ctx, op, 'max'), inputs: x };
    case 'MEAN': {
      const rank = ctx.m.tensors[op.inputs[0]].shape.length;
      const axes = ints(ctx, op.inputs[1]).map((a) => (a < 0 ? a + rank : a));
      return one({ kind: 'reduce', mode: 'mean', axes, keepDims: options(op, () => new fb.ReducerOptions()).keepDims() });
    }
    case 'PAD': {
      const p = ints(ctx, op.inputs[1]);
      return one({ kind: 'pad', pads: Array.from({ length: p.length / 2 }, (_, i): [number, number] => [p[2 * i], p[2 * i + 1]]) });
    }
    case 'RESHAPE':
    case 'SQUEEZE': {
      // Both are reshapes to the output tensor's shape, which the file states (else RESHAPE's operand).
      const out = ctx.m.tensors[op.outputs[0]].shape;
      const given = op.name === 'RESHAPE' && op.inputs[1] >= 0 && ctx.m.tensors[op.inputs[1]]?.data;
      if (!out.length && !given) throw new UsageError(`${ctx.where}: the output shape is not stated`);
      return one({ kind: 'reshape', shape: withoutBatch(out.length ? out : ints(ctx, op.inputs[1])) });
    }
    case 'CONCATENATION': {
      const o = options(op, () => new fb.ConcatenationOptions());
      return one({ kind: 'concat', axis: o.axis(), act: fused(o.fusedActivationFunction(), ctx.where) }, op.inputs);
    }
    case 'SOFTMAX': {
      const beta = options(op, () => new fb.SoftmaxOptions()).beta() || 1;
      const sm: NodeOp = { kind: 'softmax', axis: -1, log: false };
      return {
        ops:
          beta === 1 ? [sm] : [{ kind: 'binary', op: 'mul', act: 'linear', constant: { weights: weights([beta], [1]), first: false } }, sm],
        inputs: x,
      };
    }
    case 'RELU':
      return one({ kind: 'act', act: 'relu' });
    case 'RELU6':
      return one({ kind: 'act', act: 'relu6' });
    case 'LOGISTIC':
      return one({ kind: 'act', act: 'sigmoid' });
    case 'TANH':
      return one({ kind: 'act', act: 'tanh' });
    default:
      throw new UsageError(`${ctx.where} is not supported by the TFLite importer (supported: ${SUPPORTED_OPERATORS.join(', ')})`);
  }
}

/** Translates the model from its input up to the logits tensor (operators after it are left out). */
export function tfliteToNet(m: TfliteModel, file: string, logitsName?: string): Net {
  if (m.inputs.length !== 1)
    throw new UsageError(`${file}: the TFLite model has ${m.inputs.length} inputs; only single-input models are supported`);
  const output = logitsTensor(m, logitsName);
  const nodes: NetNode[] = [];
  for (const [i, op] of m.ops.entries()) {
    const ctx: Ctx = { m, where: `${file}: operator ${i} (${op.name})` };
    const { ops, inputs } = opNodes(ctx, op);
    const unknown = inputs.find((t) => t < 0 || t >= m.tensors.length);
    if (unknown !== undefined) throw new UsageError(`${ctx.where}: refers to missing tensor ${unknown}`);
    // Node names are tensor indices; extra nodes of one operator get a suffix and chain.
    let prev = inputs.map(String);
    ops.forEach((o, k) => {
      const name = k === ops.length - 1 ? String(op.outputs[0]) : `${op.outputs[0]}:${k}`;
      nodes.push({ name, inputs: prev, op: o });
      prev = [name];
    });
    if (op.outputs.includes(output)) break;
  }
  if (!nodes.some((n) => n.name === String(output)))
    throw new UsageError(`${file}: no operator produces the logits tensor ${m.tensors[output].name}`);
  return { input: String(m.inputs[0]), nodes, output: String(output) };
}

/** The input tensor (for shapes and types in cards and messages). */
export function inputTensor(m: TfliteModel): TfliteTensor {
  return m.tensors[m.inputs[0]];
}
