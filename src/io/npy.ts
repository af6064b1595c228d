import { readBounded } from './bounded.js';
import { writeAtomic } from './atomic.js';
import { UsageError } from '../errors.js';
import { decodeNpy, encodeNpy, type NdArray } from './npyCodec.js';

export { encodeNpy, decodeNpy, fortranToC, type NdArray } from './npyCodec.js';

/** Writes an array as a float32 NumPy .npy file, atomically. */
export function writeNpy(file: string, arr: NdArray): void {
  writeAtomic(file, encodeNpy(arr));
}

/** A NumPy .npy file (float32 or float64, C or Fortran order) as a float32 array in C order with its shape; anything else is a UsageError naming the file. */
export function readNpy(file: string): NdArray {
  let buf: Uint8Array;
  try {
    buf = readBounded(file, { what: 'perturbation', kind: 'array' });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`perturbation ${file}: file not found or unreadable`);
  }
  return decodeNpy(buf, file);
}
