import { readFileSync, writeFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

/** A float32 array with its shape, as stored in a .npy file. */
export interface NdArray {
  data: Float32Array;
  shape: number[];
}

/** Writes a little-endian float32 C-order .npy (NumPy format version 1.0). */
export function writeNpy(file: string, arr: NdArray): void {
  const shape = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  // Header (magic 6 + version 2 + length 2 + text + newline) is padded to a multiple of 64 bytes.
  const pad = 64 - ((10 + header.length + 1) % 64);
  header = header + ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
  writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

/** Reads a .npy of float32 or float64 (little-endian, C order) as float32. */
export function readNpy(file: string): NdArray {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    throw new UsageError(`perturbation ${file}: file not found or unreadable`);
  }
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new UsageError(`perturbation ${file}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new UsageError(`perturbation ${file}: unreadable .npy header`);
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new UsageError(`perturbation ${file}: unreadable shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  const itemSize = descr === '<f8' ? 8 : 4;
  if (buf.length < off + count * itemSize) throw new UsageError(`perturbation ${file}: truncated (expected ${count} values of shape (${shape.join(', ')}))`);
  let data: Float32Array;
  if (descr === '<f4') data = new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + count * 4));
  else if (descr === '<f8') data = Float32Array.from(new Float64Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + count * 8)));
  else throw new UsageError(`perturbation ${file}: dtype ${descr} is not supported (expected float32 or float64)`);
  return { data: fortran ? fortranToC(data, shape) : data, shape };
}

/** Reorders a column-major (Fortran, as MATLAB-derived files are) array into row-major (C) order. */
export function fortranToC(data: Float32Array, shape: number[]): Float32Array {
  const out = new Float32Array(data.length);
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  for (let c = 0; c < data.length; c++) {
    // idx is the C-order multi-index of position c; its Fortran offset has the first axis fastest.
    let f = 0;
    for (let d = nd - 1; d >= 0; d--) f = f * shape[d] + idx[d];
    out[c] = data[f];
    for (let d = nd - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}
