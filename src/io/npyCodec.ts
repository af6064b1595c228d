/*
 * The .npy format as bytes, with no file access: the browser studio encodes and decodes with it;
 * src/io/npy.ts reads and writes files with it on Node.
 */
import { UsageError } from '../errors.js';

/** A float32 array with its shape, as stored in a .npy file. */
export interface NdArray {
  data: Float32Array;
  shape: number[];
}

/** A little-endian float32 C-order .npy (NumPy format version 1.0), as bytes (browser-safe). */
export function encodeNpy(arr: NdArray): Uint8Array<ArrayBuffer> {
  const shape = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
  // Header (magic 6 + version 2 + length 2 + text + newline) is padded to a multiple of 64 bytes.
  const pad = 64 - ((10 + header.length + 1) % 64);
  header = header + ' '.repeat(pad % 64) + '\n';
  const out = new Uint8Array(10 + header.length + arr.data.byteLength);
  out.set([0x93, ...'NUMPY'.split('').map((c) => c.charCodeAt(0)), 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength), 10 + header.length);
  return out;
}

/** Decodes a .npy of float32 or float64 (little-endian; C or Fortran order) as float32 C order; `name` labels errors. */
export function decodeNpy(buf: Uint8Array, name: string): NdArray {
  // Header text is ASCII (the magic's first byte, 0x93, is compared as a byte).
  const latin1 = (a: number, b: number) => new TextDecoder('latin1').decode(buf.subarray(a, b));
  if (buf.length < 10 || buf[0] !== 0x93 || latin1(1, 6) !== 'NUMPY') throw new UsageError(`perturbation ${name}: not a .npy file`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const major = buf[6];
  if (major < 1 || major > 3) throw new UsageError(`perturbation ${name}: .npy format version ${major}, expected 1, 2 or 3`);
  const start = major === 1 ? 10 : 12;
  if (buf.length < start) throw new UsageError(`perturbation ${name}: truncated .npy header`);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  // NumPy writes headers of a few hundred bytes; one that claims more than the file holds is damaged.
  if (start + hlen > buf.length || hlen > 1 << 20) throw new UsageError(`perturbation ${name}: truncated .npy header`);
  const header = latin1(start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new UsageError(`perturbation ${name}: unreadable .npy header`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new UsageError(`perturbation ${name}: unreadable shape (${shapeText})`);
  if (descr !== '<f4' && descr !== '<f8')
    throw new UsageError(`perturbation ${name}: dtype ${descr} is not supported (expected float32 '<f4' or float64 '<f8')`);
  const count = shape.reduce((a, b) => a * b, 1);
  const off = start + hlen;
  const itemSize = descr === '<f8' ? 8 : 4;
  if (buf.length < off + count * itemSize)
    throw new UsageError(`perturbation ${name}: truncated (expected ${count} values of shape (${shape.join(', ')}))`);
  const bytes = buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + count * itemSize);
  const data = descr === '<f4' ? new Float32Array(bytes) : Float32Array.from(new Float64Array(bytes));
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
