import type { Padding } from '../net.js';

/** Where a sliding window (convolution, pooling) puts its padding and how many outputs it gives. */

export interface AxisGeometry {
  out: number;
  before: number;
  after: number;
}

/** Extent of a window of k taps spaced by `dilation`. */
export const extent = (k: number, dilation = 1): number => (k - 1) * dilation + 1;

/**
 * Output size and padding along spatial axis `axis` (0: rows, 1: columns) of an input of `size`, for a
 * window of k taps, stride s and dilation d. 'same' and 'valid' follow TensorFlow (same: ceil(size / s)
 * outputs, the odd pad at the end); explicit pads give floor((size + pads - extent) / s) + 1.
 */
export function axisGeometry(size: number, k: number, s: number, padding: Padding, axis: 0 | 1, d = 1): AxisGeometry {
  const span = extent(k, d);
  if (padding === 'valid') return { out: Math.floor((size - span) / s) + 1, before: 0, after: 0 };
  if (padding === 'same') {
    const out = Math.ceil(size / s);
    const total = Math.max((out - 1) * s + span - size, 0);
    return { out, before: Math.floor(total / 2), after: total - Math.floor(total / 2) };
  }
  const [before, after] = padding[axis];
  return { out: Math.floor((size + before + after - span) / s) + 1, before, after };
}

/** Both spatial axes: output size [ho, wo] and explicit pads [[top, bottom], [left, right]]. */
export function windowGeometry(
  inHW: number[],
  k: number[],
  s: number[],
  padding: Padding,
  d: number[] = [1, 1],
): { out: [number, number]; pads: [[number, number], [number, number]] } {
  const r = axisGeometry(inHW[0], k[0], s[0], padding, 0, d[0]);
  const c = axisGeometry(inHW[1], k[1], s[1], padding, 1, d[1]);
  return {
    out: [r.out, c.out],
    pads: [
      [r.before, r.after],
      [c.before, c.after],
    ],
  };
}

/** ONNX's pads attribute: [top, left, bottom, right]. */
export const onnxPads = (p: [[number, number], [number, number]]): number[] => [p[0][0], p[1][0], p[0][1], p[1][1]];

/** TF.js's explicit padding for NHWC ops, or its 'same' / 'valid' string. */
export function tfPadding(p: Padding): 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]] {
  return typeof p === 'string' ? p : [[0, 0], p[0], p[1], [0, 0]];
}
