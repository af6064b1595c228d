import type { ImageShape } from './imageShape.js';
import { UsageError } from '../errors.js';

/**
 * A batch of pixel-space images as the runtimes take it: n images of `shape` [H, W, C], NHWC float32
 * values in [0, 255] laid out image after image. Plain memory, so that the attacks' own arithmetic, ONNX
 * Runtime and (later) a device engine share it without a container in between.
 */
export interface Batch {
  readonly data: Float32Array;
  readonly n: number;
  readonly shape: ImageShape;
}

// Float32 arithmetic throughout (Math.fround on every product and sum that is not stored at once), so
// that results are the bits TF.js's float32 kernels gave before these helpers replaced them.

/** Values per image. */
export const imageSize = (shape: ImageShape): number => shape[0] * shape[1] * shape[2];

/**
 * A batch of `data` (n images of `shape`; pixel values, converted to float32 when given as bytes or
 * numbers); refuses a length that is not n whole images.
 */
export function batchOf(values: Float32Array | ArrayLike<number>, shape: ImageShape, n = values.length / imageSize(shape)): Batch {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  if (!Number.isInteger(n) || n < 0 || data.length !== n * imageSize(shape))
    throw new Error(`internal: ${data.length} values are not ${Number.isInteger(n) ? n : 'whole'} images of ${shape.join('x')}`);
  return { data, n, shape };
}

/** Images first .. first + count - 1 (a view: no copy). */
export function sliceImages(x: Batch, first: number, count: number): Batch {
  const size = imageSize(x.shape);
  return { data: x.data.subarray(first * size, (first + count) * size), n: count, shape: x.shape };
}

/** Rows idx[0], idx[1], ... of `size` values each, copied into a new array of the same kind (an index may repeat). */
export function pickRows<T extends Float32Array | Int32Array>(values: T, idx: ArrayLike<number>, size: number): T {
  const out = new (values.constructor as new (n: number) => T)(idx.length * size);
  for (let j = 0; j < idx.length; j++) out.set(values.subarray(idx[j] * size, (idx[j] + 1) * size), j * size);
  return out;
}

/** Images idx[0], idx[1], ... (copied; an index may repeat). */
export function pickImages(x: Batch, idx: ArrayLike<number>): Batch {
  return { data: pickRows(x.data, idx, imageSize(x.shape)), n: idx.length, shape: x.shape };
}

/** clip(x_i + scale * r_i, 0, 255) for every image i (r: one perturbation per image, [n, H, W, C]). */
export function addClipped(x: Batch, r: Float32Array, scale = 1): Batch {
  // Clipping the stored float32 sum equals clipping before the store: 0 and 255 are exact.
  const out = addScaled(x, r, scale);
  for (let t = 0; t < out.data.length; t++) out.data[t] = Math.min(255, Math.max(0, out.data[t]));
  return out;
}

/** x_i + scale * r_i without the clip (DeepFool's iterate: the reference code does not clip it either). */
export function addScaled(x: Batch, r: Float32Array, scale = 1): Batch {
  if (r.length !== x.data.length) throw new Error(`internal: ${r.length} perturbation values for ${x.data.length} pixels`);
  const out = new Float32Array(x.data.length);
  const s = Math.fround(scale);
  for (let t = 0; t < out.length; t++) out[t] = x.data[t] + Math.fround(s * r[t]);
  return { data: out, n: x.n, shape: x.shape };
}

/**
 * clip(x_i + v, 0, 255) for images stored as bytes [N, H, W, C]: all of them in order, or those at
 * `indices` (v [H, W, C], or none: the images as floats).
 */
export function perturbedBytes(pixels: Uint8Array, shape: ImageShape, v: Float32Array | null, indices?: ArrayLike<number>): Batch {
  const size = imageSize(shape);
  const n = indices ? indices.length : pixels.length / size;
  if (v && v.length !== size) throw new Error(`internal: v has ${v.length} values for images of ${size}`);
  const out = new Float32Array(n * size);
  for (let i = 0; i < n; i++) {
    const from = (indices ? indices[i] : i) * size;
    if (!(from >= 0 && from + size <= pixels.length))
      throw new Error(`internal: image ${indices ? indices[i] : i} is out of range of ${pixels.length / size} stored images`);
    if (!v) out.set(pixels.subarray(from, from + size), i * size);
    else for (let t = 0, o = i * size; t < size; t++, o++) out[o] = Math.min(255, Math.max(0, pixels[from + t] + v[t]));
  }
  return batchOf(out, shape, n);
}

/**
 * x_i + v for every image (`raw`, unclipped: where it leaves [0, 255] the clip's gradient is zero) and
 * its clip to [0, 255] (`adv`, what the model sees): the two a gradient with respect to v needs.
 */
export function shiftedBy(x: Batch, v: Float32Array): { raw: Float32Array; adv: Batch } {
  const size = imageSize(x.shape);
  if (v.length !== size) throw new Error(`internal: v has ${v.length} values for images of ${size}`);
  const raw = new Float32Array(x.data.length);
  const clipped = new Float32Array(x.data.length);
  for (let i = 0; i < x.n; i++)
    for (let t = 0, at = i * size; t < size; t++, at++) {
      raw[at] = x.data[at] + v[t];
      clipped[at] = Math.min(255, Math.max(0, raw[at]));
    }
  return { raw, adv: { data: clipped, n: x.n, shape: x.shape } };
}

/**
 * Refuses what is not a batch of `shape` images (a TF.js tensor passed where a batch is taken, a
 * misshapen one), in one line naming `what`: a wrong argument would otherwise give empty results.
 */
export function checkBatch(x: Batch, shape: ImageShape, what: string): void {
  const ok =
    x !== null &&
    typeof x === 'object' &&
    x.data instanceof Float32Array &&
    Number.isInteger(x.n) &&
    Array.isArray(x.shape) &&
    x.shape.join() === shape.join() &&
    x.data.length === x.n * imageSize(shape);
  if (!ok)
    throw new UsageError(
      `${what}: expected a batch of ${shape.join('x')} images ({ data: Float32Array, n, shape }: batchOf(pixels, shape), or batchOfTensor(t) for a TF.js tensor)`,
    );
}
