import { UsageError } from '../../errors.js';
import type { TfliteTensor } from './parse.js';

/** Typed view of a tensor's little-endian bytes (copied, so any alignment works). */
function rawValues(t: TfliteTensor): ArrayLike<number | bigint> {
  const bytes = t.data!;
  const copy = bytes.slice().buffer;
  switch (t.type) {
    case 'float32':
      return new Float32Array(copy);
    case 'int32':
      return new Int32Array(copy);
    case 'uint8':
      return new Uint8Array(copy);
    case 'int8':
      return new Int8Array(copy);
    case 'int16':
      return new Int16Array(copy);
    case 'int64':
      return new BigInt64Array(copy);
    default:
      throw new UsageError(`tensor ${t.name}: ${t.type} constants are not supported`);
  }
}

/**
 * The real values of a constant tensor: scale * (q - zero_point), with one scale (and zero point)
 * per slice along `quant.axis` when the tensor is quantised per channel; float32 data as it is.
 */
export function dequantize(t: TfliteTensor): Float32Array {
  if (!t.data) throw new UsageError(`tensor ${t.name}: expected constant data`);
  const q = rawValues(t);
  const out = new Float32Array(q.length);
  const quant = t.type === 'float32' ? undefined : t.quant;
  if (!quant) {
    for (let i = 0; i < q.length; i++) out[i] = Number(q[i]);
    return out;
  }
  const { scale, zeroPoint, axis } = quant;
  const channels = scale.length;
  if (channels > 1 && t.shape[axis] !== channels)
    throw new UsageError(`tensor ${t.name}: ${channels} quantisation scales for dimension ${axis} of size ${t.shape[axis]}`);
  // Element i lies in slice floor(i / inner) % channels of the quantised axis.
  const inner = channels > 1 ? t.shape.slice(axis + 1).reduce((a, b) => a * b, 1) : 1;
  for (let i = 0; i < q.length; i++) {
    const c = channels > 1 ? Math.floor(i / inner) % channels : 0;
    out[i] = scale[c] * (Number(q[i]) - (zeroPoint[c] ?? zeroPoint[0] ?? 0));
  }
  return out;
}

/** Integer contents of a constant (shapes, axes, paddings), as plain numbers. */
export function intValues(t: TfliteTensor): number[] {
  if (!t.data) throw new UsageError(`tensor ${t.name}: expected constant integer data`);
  if (t.type !== 'int32' && t.type !== 'int64') throw new UsageError(`tensor ${t.name}: expected int32 or int64 data, found ${t.type}`);
  return Array.from(rawValues(t), (v) => Number(v));
}
