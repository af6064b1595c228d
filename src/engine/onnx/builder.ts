import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type Attr = number | number[] | string;

/**
 * ONNX Runtime's own domain of its blocked-layout (NCHWc) CPU kernels, which its optimiser writes into
 * graphs and which a graph may also name directly (see onnx/nchwc.ts).
 */
export const NCHWC_DOMAIN = 'com.microsoft.nchwc';
/** A graph input or output: name, dimensions ('N' = batch), element type (float32 by default). */
type ValueInfo = [string, (number | string)[], ('uint8' | 'float32')?];

/** Where a weight array lies in a file beside the model (ONNX external data). */
export interface WeightPlace {
  location: string;
  offset: number;
  length: number;
}

/** A file the weights of several models go to, each array once (the models refer to it by place). */
export interface WeightStore {
  place(data: Float32Array): WeightPlace;
}

/** Arrays smaller than this stay in the model itself: shapes, scalars, small biases. */
const EXTERNAL_MIN_BYTES = 1024;

type Node = InstanceType<typeof onnx.NodeProto>;

/**
 * The nodes (in their order) that `outputs` depend on, and every value they read: what a graph keeps
 * once nodes nothing needs are dropped (initializers not among `needed` go too).
 */
export function liveNodes(nodes: Node[], outputs: string[]): { nodes: Node[]; needed: Set<string> } {
  const needed = new Set(outputs);
  const live: Node[] = [];
  for (let k = nodes.length - 1; k >= 0; k--) {
    const node = nodes[k];
    if (!node.output!.some((o) => needed.has(o))) continue;
    for (const i of node.input!) needed.add(i);
    live.push(node);
  }
  return { nodes: live.reverse(), needed };
}

/** Appends nodes and constants to an ONNX graph under unique names; encodes the model. */
export class OnnxGraph {
  private nodes: Node[] = [];
  private inits: InstanceType<typeof onnx.TensorProto>[] = [];
  private count = 0;
  private readonly domains = new Set<string>();
  private readonly constants = new Map<Float32Array, { name: string; dims: number[] }>();

  /** @param weights where float arrays of EXTERNAL_MIN_BYTES or more go (default: inside the model). */
  constructor(private readonly weights?: WeightStore) {}

  fresh(hint: string): string {
    return `${hint.replace(/[^A-Za-z0-9_]/g, '_')}_${this.count++}`;
  }

  /** One node with one output; integer-valued numbers become int attributes, others float. */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, hint = type): string {
    const out = this.fresh(hint);
    this.opMulti(type, inputs, [out], attrs);
    return out;
  }

  /** One node of another operator domain than ONNX's (its opset version 1). */
  opIn(domain: string, type: string, inputs: string[], attrs: Record<string, Attr> = {}, hint = type): string {
    const out = this.fresh(hint);
    this.opMulti(type, inputs, [out], attrs, domain);
    return out;
  }

  opMulti(type: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}, domain = ''): void {
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (typeof v === 'string') return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) };
      if (Array.isArray(v))
        return FLOAT_ATTRS.has(name)
          ? { name, type: onnx.AttributeProto.AttributeType.FLOATS, floats: v }
          : { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v };
      return Number.isInteger(v) && !FLOAT_ATTRS.has(name)
        ? { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
        : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v };
    });
    if (domain) this.domains.add(domain);
    this.nodes.push(onnx.NodeProto.create({ name: outputs[0], opType: type, input: inputs, output: outputs, attribute, domain }));
  }

  /**
   * A float constant. The same array (derived once per export, never written after) with the same
   * dims is one initializer however many nodes ask for it.
   */
  floats(data: Float32Array | number[], dims: number[], hint = 'w'): string {
    const known = data instanceof Float32Array ? this.constants.get(data) : undefined;
    if (known && known.dims.join() === dims.join()) return known.name;
    const name = this.fresh(hint);
    if (data instanceof Float32Array && !known) this.constants.set(data, { name, dims });
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    const dataType = onnx.TensorProto.DataType.FLOAT;
    if (this.weights && f.byteLength >= EXTERNAL_MIN_BYTES) {
      const at = this.weights.place(f);
      const externalData = Object.entries(at).map(([key, value]) => ({ key, value: String(value) }));
      this.inits.push(
        onnx.TensorProto.create({ name, dims, dataType, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData }),
      );
    } else
      this.inits.push(onnx.TensorProto.create({ name, dims, dataType, rawData: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) }));
    return name;
  }

  ints(data: number[], hint = 'i'): string {
    const name = this.fresh(hint);
    const b = new BigInt64Array(data.map((v) => BigInt(v)));
    this.inits.push(
      onnx.TensorProto.create({ name, dims: [data.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(b.buffer) }),
    );
    return name;
  }

  scalar(v: number): string {
    return this.floats([v], [], 'c');
  }

  /** The model with inputs and outputs of the given shapes ('N' = batch), float32 unless marked uint8. */
  encode(inputs: ValueInfo[], outputs: ValueInfo[]): Uint8Array {
    const info = ([name, dims, type]: ValueInfo) => ({
      name,
      type: {
        tensorType: {
          elemType: type === 'uint8' ? onnx.TensorProto.DataType.UINT8 : onnx.TensorProto.DataType.FLOAT,
          shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
        },
      },
    });
    // Only what the outputs depend on: a writer may build a value that a later one makes unneeded
    // (interleaved rows whose consumer reads the phases instead).
    const { nodes, needed } = liveNodes(
      this.nodes,
      outputs.map(([name]) => name),
    );
    const graph = onnx.GraphProto.create({
      name: 'uap',
      node: nodes,
      initializer: this.inits.filter((t) => needed.has(t.name)),
      input: inputs.map(info),
      output: outputs.map(info),
    });
    const model = onnx.ModelProto.create({
      irVersion: 7,
      producerName: 'uap',
      opsetImport: [{ domain: '', version: 16 }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      graph,
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** Attributes that are floats even when their value is a whole number. */
const FLOAT_ATTRS = new Set(['alpha', 'beta', 'gamma', 'value_float', 'epsilon', 'activation_params']);
