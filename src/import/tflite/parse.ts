import * as flatbuffers from 'flatbuffers';
import { UsageError } from '../../errors.js';
import * as fb from './schema.generated.js';

/**
 * A TFLite flatbuffer read into plain objects: the main subgraph's tensors (with their raw constant
 * bytes and quantisation) and operators in execution order. Only the fields the importer uses.
 */

/** TFLite tensor element types by their number in the format. */
export const TENSOR_TYPES: Record<number, string> = {
  0: 'float32',
  1: 'float16',
  2: 'int32',
  3: 'uint8',
  4: 'int64',
  5: 'string',
  6: 'bool',
  7: 'int16',
  9: 'int8',
  10: 'float64',
};

/** Operator names by builtin number, for the operators the importer runs and the common ones it does not. */
export const OPERATOR_NAMES: Record<number, string> = {
  0: 'ADD',
  1: 'AVERAGE_POOL_2D',
  2: 'CONCATENATION',
  3: 'CONV_2D',
  4: 'DEPTHWISE_CONV_2D',
  6: 'DEQUANTIZE',
  9: 'FULLY_CONNECTED',
  11: 'L2_NORMALIZATION',
  14: 'LOGISTIC',
  17: 'MAX_POOL_2D',
  18: 'MUL',
  19: 'RELU',
  21: 'RELU6',
  22: 'RESHAPE',
  23: 'RESIZE_BILINEAR',
  25: 'SOFTMAX',
  28: 'TANH',
  32: 'CUSTOM',
  34: 'PAD',
  39: 'TRANSPOSE',
  40: 'MEAN',
  41: 'SUB',
  42: 'DIV',
  43: 'SQUEEZE',
  45: 'STRIDED_SLICE',
  49: 'SPLIT',
  50: 'LOG_SOFTMAX',
  53: 'CAST',
  54: 'PRELU',
  55: 'MAXIMUM',
  57: 'MINIMUM',
  60: 'PADV2',
  65: 'SLICE',
  67: 'TRANSPOSE_CONV',
  83: 'PACK',
  97: 'RESIZE_NEAREST_NEIGHBOR',
  98: 'LEAKY_RELU',
  100: 'MIRROR_PAD',
  114: 'QUANTIZE',
  117: 'HARD_SWISH',
};

export interface Quantization {
  scale: number[];
  zeroPoint: number[];
  /** Axis the scales run along when there are several (per-channel quantisation). */
  axis: number;
}

export interface TfliteTensor {
  index: number;
  name: string;
  shape: number[];
  type: string;
  /** Constant data (little-endian bytes) or undefined for activations. */
  data?: Uint8Array;
  quant?: Quantization;
}

export interface TfliteOp {
  /** Builtin operator number. */
  code: number;
  name: string;
  inputs: number[];
  outputs: number[];
  /** The flatbuffer operator, to read its builtin options. */
  raw: fb.Operator;
}

export interface TfliteModel {
  tensors: TfliteTensor[];
  ops: TfliteOp[];
  inputs: number[];
  outputs: number[];
  description: string;
}

export function operatorName(code: number): string {
  return OPERATOR_NAMES[code] ?? `builtin operator ${code}`;
}

function ints(len: number, at: (i: number) => number | bigint | null): number[] {
  return Array.from({ length: len }, (_, i) => Number(at(i) ?? 0));
}

function readQuantization(q: fb.QuantizationParameters | null): Quantization | undefined {
  if (!q || q.scaleLength() === 0) return undefined;
  return {
    scale: ints(q.scaleLength(), (i) => q.scale(i)),
    zeroPoint: ints(q.zeroPointLength(), (i) => q.zeroPoint(i)),
    axis: q.quantizedDimension(),
  };
}

/** Parses a .tflite file; `file` names it in errors. */
export function parseTflite(bytes: Uint8Array, file: string): TfliteModel {
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (bytes.length < 8 || !fb.Model.bufferHasIdentifier(bb))
    throw new UsageError(`${file}: not a TFLite model (the file identifier "TFL3" is missing)`);
  let model: fb.Model;
  try {
    model = fb.Model.getRootAsModel(bb);
    return readModel(model, file);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: damaged TFLite file (${(e as Error).message})`);
  }
}

function readModel(model: fb.Model, file: string): TfliteModel {
  if (model.subgraphsLength() < 1) throw new UsageError(`${file}: the TFLite model has no subgraph`);
  const g = model.subgraphs(0)!;
  const codes = ints(model.operatorCodesLength(), (i) => {
    const c = model.operatorCodes(i)!;
    // Newer files keep the number in builtin_code and cap the old byte field at 127.
    return Math.max(c.deprecatedBuiltinCode(), c.builtinCode());
  });
  const tensors: TfliteTensor[] = [];
  for (let i = 0; i < g.tensorsLength(); i++) {
    const t = g.tensors(i)!;
    const buffer = t.buffer() ? model.buffers(t.buffer()) : null;
    if (buffer && buffer.offset() > 1n)
      throw new UsageError(`${file}: tensor ${t.name()} keeps its data outside the flatbuffer (models over 2 GB are not supported)`);
    const data = buffer?.dataArray() ?? undefined;
    tensors.push({
      index: i,
      name: t.name() ?? `tensor${i}`,
      shape: ints(t.shapeLength(), (k) => t.shape(k)),
      type: TENSOR_TYPES[t.type()] ?? `type ${t.type()}`,
      data: data && data.length ? data : undefined,
      quant: readQuantization(t.quantization()),
    });
  }
  const ops: TfliteOp[] = [];
  for (let i = 0; i < g.operatorsLength(); i++) {
    const op = g.operators(i)!;
    const code = codes[op.opcodeIndex()];
    if (code === undefined) throw new UsageError(`${file}: operator ${i} refers to a missing operator code`);
    ops.push({
      code,
      name: operatorName(code),
      inputs: ints(op.inputsLength(), (k) => op.inputs(k)),
      outputs: ints(op.outputsLength(), (k) => op.outputs(k)),
      raw: op,
    });
  }
  return {
    tensors,
    ops,
    inputs: ints(g.inputsLength(), (k) => g.inputs(k)),
    outputs: ints(g.outputsLength(), (k) => g.outputs(k)),
    description: model.description() ?? '',
  };
}
