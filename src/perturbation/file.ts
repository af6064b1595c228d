import { readBounded } from '../io/bounded.js';
import { UsageError } from '../errors.js';
import type * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import { silent, type Log } from '../log.js';
import type { NdArray } from '../io/npyCodec.js';
import { arrayFromBytes, fitPerturbation, type PerturbationFormat } from './format.js';

export * from './format.js';

/** Reads the array of a .npy, or the named (or only) array of a .npz. */
export function readArrayFile(file: string, array?: string): NdArray {
  let buf: Uint8Array;
  try {
    buf = readBounded(file, { what: 'perturbation', kind: 'array' });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`perturbation ${file}: file not found or unreadable`);
  }
  return arrayFromBytes(buf, file, array);
}

/**
 * Reads a perturbation file (.npy, or an array of a .npz) in any layout and units (see PerturbationFormat),
 * as HWC pixels fitted to the model's input: same size, or resized (bilinear).
 */
export function loadPerturbation(file: string, model: Classifier, log: Log = silent, format: PerturbationFormat = {}): tf.Tensor3D {
  return fitPerturbation(readArrayFile(file, format.array), file, model, log, format);
}
