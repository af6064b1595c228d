import type { Shape } from '../net.js';

/**
 * Storage of a rank-4 value inside the ONNX graphs: 'plain' as the Net holds it (NHWC for images),
 * 'nchw' (transposed by [0, 3, 1, 2], the layout ONNX convolutions and pools need), or 'nchwc': ONNX
 * Runtime's blocked layout, [N, C/b, H, W, b] under the logical dims [N, C, H, W] (onnx/nchwc.ts;
 * gradient graphs on the CPU only, C a multiple of the block). A blocked value's elements are in no
 * axis order: only element-wise ops between values of one shape may touch it. Other ranks are plain.
 */
export type Layout = 'plain' | 'nchw' | 'nchwc';

export const NHWC_TO_NCHW = [0, 3, 1, 2];
export const NCHW_TO_NHWC = [0, 2, 3, 1];

/** Dimensions (without batch) of a value of Net shape `shape` as stored in `layout`. */
export function storageDims(shape: Shape, layout: Layout): number[] {
  return layout === 'plain' ? shape : [shape[2], shape[0], shape[1]];
}

/** The storage axis of a Net axis (batch-inclusive, may be negative) of a value of `rank` axes (batch included). */
export function storageAxis(axis: number, rank: number, layout: Layout): number {
  const a = axis < 0 ? axis + rank : axis;
  if (layout === 'nchwc' && a !== 0) throw new Error('internal: a blocked value has no axis order');
  return layout === 'plain' ? a : NHWC_TO_NCHW.indexOf(a);
}
