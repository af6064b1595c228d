import * as flatbuffers from 'flatbuffers';
import * as fb from '../src/import/tflite/schema.generated.js';

/** Writes small TFLite flatbuffers for tests, through the same generated schema code the importer reads with. */

export interface TensorSpec {
  shape: number[];
  type: 'float32' | 'uint8' | 'int8' | 'int32';
  data?: number[];
  quant?: { scale: number[]; zeroPoint: number[]; axis?: number };
  name?: string;
}

export interface OpSpec {
  code: number;
  inputs: number[];
  outputs: number[];
  /** Builds the options table; returns [union tag, offset]. */
  options?: (b: flatbuffers.Builder) => [fb.BuiltinOptions, flatbuffers.Offset];
}

const TYPE_NUMBER = { float32: 0, int32: 2, uint8: 3, int8: 9 } as const;

function bytes(t: TensorSpec): Uint8Array {
  const d = t.data!;
  const arr =
    t.type === 'float32'
      ? new Float32Array(d)
      : t.type === 'int32'
        ? new Int32Array(d)
        : t.type === 'int8'
          ? new Int8Array(d)
          : new Uint8Array(d);
  return new Uint8Array(arr.buffer);
}

export function buildTflite(spec: { tensors: TensorSpec[]; ops: OpSpec[]; inputs: number[]; outputs: number[] }): Uint8Array {
  const b = new flatbuffers.Builder(1024);
  // Buffer 0 is the empty sentinel; constant tensor i gets its own buffer.
  const buffers = [fb.Buffer.createBuffer(b, 0, 0n, 0n)];
  const bufferOf = spec.tensors.map((t) => {
    if (!t.data) return 0;
    buffers.push(fb.Buffer.createBuffer(b, fb.Buffer.createDataVector(b, bytes(t)), 0n, 0n));
    return buffers.length - 1;
  });
  const tensors = spec.tensors.map((t, i) => {
    const name = b.createString(t.name ?? `t${i}`);
    const shape = fb.Tensor.createShapeVector(b, t.shape);
    const quant = t.quant
      ? fb.QuantizationParameters.createQuantizationParameters(
          b,
          0,
          0,
          fb.QuantizationParameters.createScaleVector(b, t.quant.scale),
          fb.QuantizationParameters.createZeroPointVector(b, t.quant.zeroPoint.map(BigInt)),
          fb.QuantizationDetails.NONE,
          0,
          t.quant.axis ?? 0,
        )
      : 0;
    fb.Tensor.startTensor(b);
    fb.Tensor.addShape(b, shape);
    fb.Tensor.addType(b, TYPE_NUMBER[t.type]);
    fb.Tensor.addBuffer(b, bufferOf[i]);
    fb.Tensor.addName(b, name);
    if (quant) fb.Tensor.addQuantization(b, quant);
    return fb.Tensor.endTensor(b);
  });
  const codes = [...new Set(spec.ops.map((o) => o.code))];
  const ops = spec.ops.map((o) => {
    const [type, opts] = o.options ? o.options(b) : [fb.BuiltinOptions.NONE, 0];
    return fb.Operator.createOperator(
      b,
      codes.indexOf(o.code),
      fb.Operator.createInputsVector(b, o.inputs),
      fb.Operator.createOutputsVector(b, o.outputs),
      type,
      opts,
    );
  });
  const subgraph = fb.SubGraph.createSubGraph(
    b,
    fb.SubGraph.createTensorsVector(b, tensors),
    fb.SubGraph.createInputsVector(b, spec.inputs),
    fb.SubGraph.createOutputsVector(b, spec.outputs),
    fb.SubGraph.createOperatorsVector(b, ops),
    b.createString('main'),
  );
  const model = fb.Model.createModel(
    b,
    3,
    fb.Model.createOperatorCodesVector(
      b,
      codes.map((c) => fb.OperatorCode.createOperatorCode(b, Math.min(c, 127), 0, 1, c)),
    ),
    fb.Model.createSubgraphsVector(b, [subgraph]),
    b.createString('test model'),
    fb.Model.createBuffersVector(b, buffers),
  );
  b.finish(model, 'TFL3');
  return b.asUint8Array();
}
