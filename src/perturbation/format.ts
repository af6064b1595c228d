import { unzipSync, zipSync } from 'fflate';
import { readLimit } from '../io/readLimits.js';
import { UsageError } from '../errors.js';
import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import { namedLog, silent, type Log } from '../log.js';
import { transposeArray } from '../engine/net.js';
import { decodeNpy, encodeNpy, type NdArray } from '../io/npyCodec.js';
import type { ModelCard } from '../classifier/card.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * Perturbations as other tools hold them (the formats, as bytes and arrays: no file access, so the
 * browser studio reads them with the same code; src/perturbation/file.ts reads files). uap's own are HWC in pixel units ([0, 255] images);
 * PyTorch's and ART's are CHW or NCHW, in [0, 1] units (before Normalize) or normalised units (after
 * it: divided by std). Reading converts to uap's layout and units; exporting converts back.
 */
export const LAYOUTS = ['hwc', 'chw', 'nhwc', 'nchw'] as const;
/** An axis order of a stored perturbation (one of LAYOUTS). */
export type PerturbationLayout = (typeof LAYOUTS)[number];
/** The units a stored perturbation can be in: pixels (0-255 range), unit ([0, 1] images) or normalized (the model's preprocessed space). */
export const UNITS = ['pixels', 'unit', 'normalized'] as const;
/** The units of a stored perturbation (one of UNITS). */
export type PerturbationUnits = (typeof UNITS)[number];

/** How another tool's perturbation file is laid out: axis order, units and, in a .npz, the array's name. */
export interface PerturbationFormat {
  /** Axis order of the stored array; 'auto' (default) finds the channel axis from the model's channel count. */
  layout?: PerturbationLayout | 'auto';
  /** Scale of the stored values; 'auto' (default) takes pixels when the values are clearly pixel-sized, else refuses. */
  units?: PerturbationUnits | 'auto';
  /** The array's name in a .npz (default: its only array). */
  array?: string;
}

type Preprocess = ModelCard['preprocess'];

/**
 * Values of magnitude above this are read as pixels by 'auto': in [0, 1] units a perturbation this large
 * would span the whole range more than twice, and in normalised units (std about 0.23) half of it.
 */
const PIXEL_EVIDENCE = 2.5;

/** Checks a layout / units option value. */
export function checkFormat(f: PerturbationFormat): void {
  if (f.layout !== undefined && f.layout !== 'auto' && !LAYOUTS.includes(f.layout))
    throw new UsageError(`{layout} ${String(f.layout)}: expected ${LAYOUTS.join(', ')} or auto`);
  if (f.units !== undefined && f.units !== 'auto' && !UNITS.includes(f.units))
    throw new UsageError(`{units} ${String(f.units)}: expected ${UNITS.join(', ')} or auto`);
}

/**
 * The arrays of a .npz (a zip of .npy files, compressed or not), by name: only `.npy` members (only
 * `array`'s when given) are inflated, and no more bytes than an array file may have in all (sizes as
 * the zip states them, which bounds what fflate allocates: a zip bomb of overlapping entries is refused).
 */
function npzArrays(buf: Uint8Array, file: string, array?: string): { arrays: Map<string, Uint8Array>; names: string[] } {
  const names: string[] = [];
  const limit = readLimit('array');
  let total = 0;
  let tooBig: string | undefined;
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(buf, {
      filter: (f) => {
        if (!f.name.endsWith('.npy')) return false;
        const name = f.name.slice(0, -4);
        names.push(name);
        if (array !== undefined && name !== array) return false;
        total += f.originalSize;
        if (total > limit) tooBig ??= name;
        return tooBig === undefined;
      },
    });
  } catch (e) {
    throw new UsageError(`perturbation ${file}: not a readable .npz (zip) file (${(e as Error).message})`);
  }
  if (tooBig !== undefined)
    throw new UsageError(
      `perturbation ${file}: its arrays inflate to more than the ${limit / 2 ** 20} MiB an array file may have (at ${tooBig}; raise it with UAP_MAX_ARRAY_MB)`,
    );
  return { arrays: new Map(Object.entries(entries).map(([n, b]) => [n.slice(0, -4), b])), names };
}

/** The array of a .npy, or the named (or only) array of a .npz, from the file's bytes (`file` names it in errors). */
export function arrayFromBytes(buf: Uint8Array, file: string, array?: string): NdArray {
  const zip = buf[0] === 0x50 && buf[1] === 0x4b; // "PK": a .npz whatever its name
  if (!zip) {
    if (array !== undefined) throw new UsageError(`perturbation ${file}: {array} ${array} names an array of a .npz, but this is a .npy`);
    return decodeNpy(buf, file);
  }
  if (array === undefined) {
    const { names } = npzArrays(buf, file, '\0'); // the names alone, nothing inflated
    if (names.length !== 1)
      throw new UsageError(`perturbation ${file}: holds ${names.length ? names.join(', ') : 'no arrays'}; name one with {array}`);
    array = names[0];
  }
  const { arrays, names } = npzArrays(buf, file, array);
  const got = arrays.get(array);
  if (!got) throw new UsageError(`perturbation ${file}: has no array ${array} (it holds ${names.join(', ') || 'none'})`);
  return decodeNpy(got, `${file}:${array}`);
}

/** Writes arrays as an uncompressed .npz that numpy.load reads. */
export function encodeNpz(arrays: Record<string, NdArray>): Uint8Array {
  return zipSync(Object.fromEntries(Object.entries(arrays).map(([n, a]) => [`${n}.npy`, [encodeNpy(a), { level: 0 }]])));
}

/** Which stored layout `shape` is for a model taking H x W x C images ('auto' resolved). */
function resolveLayout(shape: number[], given: PerturbationLayout | 'auto', input: ImageShape, file: string): PerturbationLayout {
  const c = input[2];
  const batched = shape.length === 4;
  if (batched && shape[0] !== 1)
    throw new UsageError(`perturbation ${file}: shape (${shape.join(', ')}) holds ${shape[0]} perturbations; expected one`);
  if (shape.length !== 3 && !batched)
    throw new UsageError(`perturbation ${file}: shape (${shape.join(', ')}); expected HWC, CHW, NHWC or NCHW with N = 1`);
  const s = batched ? shape.slice(1) : shape;
  if (given !== 'auto') {
    if (given.length !== shape.length)
      throw new UsageError(`perturbation ${file}: {layout} ${given} needs ${given.length} axes, the array has shape (${shape.join(', ')})`);
    return given;
  }
  const last = s[2] === c;
  const first = s[0] === c;
  if (last && first)
    throw new UsageError(
      `perturbation ${file}: shape (${shape.join(', ')}) reads as channels first and last; pass {layout} (${LAYOUTS.join(', ')})`,
    );
  if (!last && !first)
    throw new UsageError(
      `perturbation ${file}: shape (${shape.join(', ')}) has no axis of ${c} channel${c === 1 ? '' : 's'} at either end (the model takes ${input.join('x')} images)`,
    );
  return `${batched ? 'n' : ''}${last ? 'hwc' : 'chw'}` as PerturbationLayout;
}

/** Per-channel size of one normalised unit in pixels (the model's std, or 1 / scale). */
export function pixelsPerNormalizedUnit(pre: Preprocess | undefined, channels: number, file: string): number[] {
  if (pre?.std) return pre.std.slice(0, channels);
  if (pre?.scale !== undefined) return new Array<number>(channels).fill(1 / pre.scale);
  throw new UsageError(
    `perturbation ${file}: {units} normalized needs the model's normalisation; its card has no "preprocess" std or scale (pass {std})`,
  );
}

/** Per-channel factors from `units` to pixel units. */
function unitFactors(units: PerturbationUnits, pre: Preprocess | undefined, c: number, file: string): number[] {
  if (units === 'pixels') return new Array<number>(c).fill(1);
  if (units === 'unit') return new Array<number>(c).fill(255);
  return pixelsPerNormalizedUnit(pre, c, file);
}

/** HWC <-> CHW ([a, b, c] is the input's shape). */
function transposeChannels(data: Float32Array, shape: ImageShape, toChw: boolean): Float32Array {
  return transposeArray(data, shape, toChw ? [2, 0, 1] : [1, 2, 0]).data;
}

export interface LoadedArray {
  data: Float32Array;
  /** H, W, C as stored (the caller resizes to the model's H, W when they differ). */
  shape: ImageShape;
  layout: PerturbationLayout;
  units: PerturbationUnits;
}

/**
 * A stored perturbation in uap's layout (HWC) and units (pixels). `channelOrder` BGR models get their
 * normalised-unit channels flipped to RGB, since normalised arrays are in the model's own order.
 */
export function toPixelsHwc(
  arr: NdArray,
  fmt: PerturbationFormat,
  model: { inputShape: ImageShape; preprocess?: Preprocess },
  file: string,
): LoadedArray {
  checkFormat(fmt);
  const c = model.inputShape[2];
  const layout = resolveLayout(arr.shape, fmt.layout ?? 'auto', model.inputShape, file);
  const s = (arr.shape.length === 4 ? arr.shape.slice(1) : arr.shape) as ImageShape;
  const chw = layout.endsWith('chw');
  const shape: ImageShape = chw ? [s[1], s[2], s[0]] : s;
  if (shape[2] !== c) throw new UsageError(`perturbation ${file}: read as ${layout} it has ${shape[2]} channels; the model takes ${c}`);
  // An axis of length 0 would be "resized" into the model's size, giving values no file held.
  if (arr.data.length === 0) throw new UsageError(`perturbation ${file}: shape (${arr.shape.join(', ')}) holds no values`);
  if (!arr.data.every(Number.isFinite)) throw new UsageError(`perturbation ${file}: holds NaN or infinite values`);
  let data = chw ? transposeChannels(arr.data, s, false) : Float32Array.from(arr.data);
  const largest = data.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
  let units = fmt.units ?? 'auto';
  if (units === 'auto') {
    if (largest <= PIXEL_EVIDENCE && largest > 0)
      throw new UsageError(
        `perturbation ${file}: its values stay within +-${largest.toPrecision(3)}, which could be pixels, [0, 1] units or normalised units; pass {units} pixels, unit or normalized`,
      );
    units = 'pixels';
  }
  const f = unitFactors(units, model.preprocess, c, file);
  const bgr = units === 'normalized' && model.preprocess?.channelOrder === 'BGR';
  const pixels = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const ch = i % c;
    pixels[bgr ? i - ch + (c - 1 - ch) : i] = data[i] * f[ch];
  }
  data = pixels;
  return { data, shape, layout, units };
}

/** uap's HWC pixel-unit perturbation in another layout and units (the inverse of toPixelsHwc). */
export function fromPixelsHwc(
  data: Float32Array,
  shape: ImageShape,
  layout: PerturbationLayout,
  units: PerturbationUnits,
  pre: Preprocess | undefined,
  what: string,
): NdArray {
  const c = shape[2];
  const f = unitFactors(units, pre, c, what);
  const bgr = units === 'normalized' && pre?.channelOrder === 'BGR';
  const scaled = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const ch = i % c;
    scaled[bgr ? i - ch + (c - 1 - ch) : i] = data[i] / f[ch];
  }
  const chw = layout.endsWith('chw');
  const out = chw ? transposeChannels(scaled, shape, true) : scaled;
  const dims = chw ? [c, shape[0], shape[1]] : [...shape];
  return { data: out, shape: layout.startsWith('n') ? [1, ...dims] : dims };
}

/** uap's own perturbation files (runs, checkpoints): HWC in pixel units. */
export const OWN_FORMAT: PerturbationFormat = { layout: 'hwc', units: 'pixels' };

/**
 * A perturbation's array (see arrayFromBytes) in any layout and units (see PerturbationFormat), as HWC
 * pixels fitted to the model's input: same size, or resized (bilinear). `file` names it in messages.
 */
export function fitPerturbation(
  arr: NdArray,
  file: string,
  model: Pick<Classifier, 'inputShape' | 'preprocess'>,
  log: Log = silent,
  format: PerturbationFormat = {},
): tf.Tensor3D {
  log = namedLog(log);
  const got = toPixelsHwc(arr, format, model, file);
  const [h, w] = model.inputShape;
  if (got.layout !== 'hwc' || got.units !== 'pixels')
    log.info(`perturbation ${file}: read as ${got.layout} in ${got.units === 'pixels' ? 'pixel' : got.units} units`);
  const largest = got.data.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
  if (largest > 255)
    log.warn(
      `perturbation ${file}: values reach ${largest.toPrecision(4)} pixels, beyond anything pixels in [0, 255] can take (x + v is clipped); are its {units} right?`,
    );
  const v = tf.tensor3d(got.data, got.shape);
  if (got.shape[0] === h && got.shape[1] === w) return v;
  log.warn(`perturbation ${file}: resized from ${got.shape[0]}x${got.shape[1]} to ${h}x${w} (bilinear)`);
  const r = tf.tidy(() => tf.image.resizeBilinear(v, [h, w]) as tf.Tensor3D);
  v.dispose();
  return r;
}
