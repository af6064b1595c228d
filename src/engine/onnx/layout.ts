import type { Shape } from '../net.js';

/**
 * Storage of a rank-4 value inside the ONNX graphs: 'plain' as the Net holds it (NHWC for images), or
 * 'nchw' (transposed by [0, 3, 1, 2], the layout ONNX convolutions and pools need). Other ranks are plain.
 */
export type Layout = 'plain' | 'nchw';

export const NHWC_TO_NCHW = [0, 3, 1, 2];
export const NCHW_TO_NHWC = [0, 2, 3, 1];

/** Dimensions (without batch) of a value of Net shape `shape` as stored in `layout`. */
export function storageDims(shape: Shape, layout: Layout): number[] {
  return layout === 'nchw' ? [shape[2], shape[0], shape[1]] : shape;
}

/** The storage axis of a Net axis (batch-inclusive, may be negative) of a value of `rank` axes (batch included). */
export function storageAxis(axis: number, rank: number, layout: Layout): number {
  const a = axis < 0 ? axis + rank : axis;
  return layout === 'nchw' ? NHWC_TO_NCHW.indexOf(a) : a;
}
