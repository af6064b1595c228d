import onnxProto from 'onnx-proto';
import { UsageError } from '../../errors.js';

/**
 * Reads an ONNX ModelProto (protobuf, decoded by onnx-proto) into plain values: the nodes, the
 * initializers as typed tensors, the graph's inputs and outputs with their dimensions, the opset.
 * Weights stored as external data (`model.onnx` + `model.onnx.data`, as large exports do) are read
 * through `external`, which the host supplies (files in Node, dropped files in a browser).
 */

const { onnx } = onnxProto;

/** A constant tensor: float32 weights as they are; other floats, ints (shape values) and bools as float64. */
export interface Tensor {
  dtype: 'float' | 'int' | 'bool';
  dims: number[];
  data: Float32Array | Float64Array;
}

export type AttrValue = number | number[] | string | string[] | Tensor;

export interface OnnxNodeInfo {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, AttrValue>;
}

export interface ValueDims {
  name: string;
  /** A number, or the symbolic name of a dynamic dimension ('' when unnamed). */
  dims: (number | string)[];
}

export interface OnnxModel {
  /** The default domain's opset version. */
  opset: number;
  nodes: OnnxNodeInfo[];
  initializers: Map<string, Tensor>;
  /** Graph inputs that are not initializers. */
  inputs: ValueDims[];
  outputs: ValueDims[];
  producer: string;
  /** Whether some tensor's bytes came from a file beside the model (ONNX external data). */
  externalData: boolean;
}

/** Reads `length` bytes at `offset` of an external data file named in the model (relative to it). */
export type ExternalReader = (location: string, offset: number, length: number | undefined) => Uint8Array;

const T = onnx.TensorProto.DataType;
const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v as bigint));

/** Bytes per element and how to read one little-endian element, per ONNX element type. */
const RAW: Record<number, { bytes: number; dtype: Tensor['dtype']; read: (v: DataView, at: number) => number }> = {
  [T.FLOAT]: { bytes: 4, dtype: 'float', read: (v, at) => v.getFloat32(at, true) },
  [T.DOUBLE]: { bytes: 8, dtype: 'float', read: (v, at) => v.getFloat64(at, true) },
  [T.FLOAT16]: { bytes: 2, dtype: 'float', read: (v, at) => halfToFloat(v.getUint16(at, true)) },
  [T.INT64]: { bytes: 8, dtype: 'int', read: (v, at) => Number(v.getBigInt64(at, true)) },
  [T.INT32]: { bytes: 4, dtype: 'int', read: (v, at) => v.getInt32(at, true) },
  [T.INT16]: { bytes: 2, dtype: 'int', read: (v, at) => v.getInt16(at, true) },
  [T.INT8]: { bytes: 1, dtype: 'int', read: (v, at) => v.getInt8(at) },
  [T.UINT8]: { bytes: 1, dtype: 'int', read: (v, at) => v.getUint8(at) },
  [T.BOOL]: { bytes: 1, dtype: 'bool', read: (v, at) => v.getUint8(at) },
};

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** A TensorProto as a Tensor; `where` names it in errors. */
export function readTensor(t: InstanceType<typeof onnx.TensorProto>, where: string, external?: ExternalReader): Tensor {
  const dims = (t.dims ?? []).map(num);
  const count = dims.reduce((a, b) => a * b, 1);
  const kind = RAW[t.dataType];
  if (!kind) throw new UsageError(`${where}: tensor ${t.name} has element type ${T[t.dataType] ?? t.dataType}, which is not supported`);
  let raw = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const info = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = info.get('location');
    if (!location) throw new UsageError(`${where}: tensor ${t.name} is stored externally but names no file`);
    if (!external) throw new UsageError(`${where}: tensor ${t.name} is stored in ${location}, which cannot be read here`);
    raw = external(location, Number(info.get('offset') ?? 0), info.has('length') ? Number(info.get('length')) : count * kind.bytes);
  }
  if (raw) {
    if (raw.length < count * kind.bytes)
      throw new UsageError(`${where}: tensor ${t.name} holds ${raw.length} bytes, expected ${count * kind.bytes}`);
    // float32 weights: one copy of the bytes (the platforms we run on are little-endian, as ONNX is).
    // Uint8Array's own slice: a copy even where the bytes are a Node Buffer, whose slice is a view of its pool.
    if (t.dataType === T.FLOAT)
      return { dtype: 'float', dims, data: new Float32Array(Uint8Array.prototype.slice.call(raw, 0, count * 4).buffer) };
    const data = new Float64Array(count);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < count; i++) data[i] = kind.read(view, i * kind.bytes);
    return { dtype: kind.dtype, dims, data };
  }
  // Typed fields: float_data, double_data, int64_data, int32_data (which also holds int8/16, uint8, bool and float16 bits).
  const fields: ArrayLike<unknown> =
    t.dataType === T.FLOAT ? t.floatData : t.dataType === T.DOUBLE ? t.doubleData : t.dataType === T.INT64 ? t.int64Data : t.int32Data;
  const data = new Float64Array(count);
  if ((fields?.length ?? 0) < count)
    throw new UsageError(`${where}: tensor ${t.name} holds ${fields?.length ?? 0} values, expected ${count}`);
  for (let i = 0; i < count; i++) data[i] = t.dataType === T.FLOAT16 ? halfToFloat(num(fields[i])) : num(fields[i]);
  return { dtype: kind.dtype, dims, data };
}

function readAttr(a: InstanceType<typeof onnx.AttributeProto>, where: string, external?: ExternalReader): AttrValue {
  const A = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case A.FLOAT:
      return a.f;
    case A.INT:
      return num(a.i);
    case A.STRING:
      return new TextDecoder().decode(a.s);
    case A.FLOATS:
      return [...a.floats];
    case A.INTS:
      return a.ints.map(num);
    case A.STRINGS:
      return a.strings.map((s) => new TextDecoder().decode(s));
    case A.TENSOR:
      return readTensor(a.t as InstanceType<typeof onnx.TensorProto>, where, external);
    default:
      throw new UsageError(`${where}: attribute ${a.name} has a type (${A[a.type] ?? a.type}) that is not supported`);
  }
}

function valueDims(v: InstanceType<typeof onnx.ValueInfoProto>): ValueDims {
  const dims = (v.type?.tensorType?.shape?.dim ?? []).map((d) =>
    d.dimParam ? d.dimParam : d.dimValue != null && num(d.dimValue) > 0 ? num(d.dimValue) : '',
  );
  return { name: v.name, dims };
}

/** Decodes an ONNX model; `file` names it in errors. */
export function parseOnnx(bytes: Uint8Array, file: string, readExternal?: ExternalReader): OnnxModel {
  let externalData = false;
  const external: ExternalReader | undefined =
    readExternal &&
    ((location, offset, length) => {
      externalData = true;
      return readExternal(location, offset, length);
    });
  let m: InstanceType<typeof onnx.ModelProto>;
  try {
    m = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new UsageError(`${file}: not an ONNX model (${(e as Error).message.split('\n')[0]})`);
  }
  const g = m.graph as InstanceType<typeof onnx.GraphProto> | null;
  if (!g || !g.node?.length) throw new UsageError(`${file}: not an ONNX model (no graph or no nodes)`);
  const opset = m.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  const initializers = new Map<string, Tensor>();
  for (const t of g.initializer as InstanceType<typeof onnx.TensorProto>[]) initializers.set(t.name, readTensor(t, file, external));
  const nodes = (g.node as InstanceType<typeof onnx.NodeProto>[]).map((n, i): OnnxNodeInfo => {
    const name = n.name || `#${i}`;
    const where = `${file}: node ${name} (${n.opType})`;
    return {
      name,
      opType: n.opType,
      domain: n.domain ?? '',
      inputs: [...n.input],
      outputs: [...n.output],
      attrs: new Map((n.attribute as InstanceType<typeof onnx.AttributeProto>[]).map((a) => [a.name, readAttr(a, where, external)])),
    };
  });
  return {
    opset: opset ? num(opset.version) : 1,
    nodes,
    initializers,
    inputs: (g.input as InstanceType<typeof onnx.ValueInfoProto>[]).filter((v) => !initializers.has(v.name)).map(valueDims),
    outputs: (g.output as InstanceType<typeof onnx.ValueInfoProto>[]).map(valueDims),
    producer: [m.producerName, m.producerVersion].filter(Boolean).join(' '),
    externalData,
  };
}
