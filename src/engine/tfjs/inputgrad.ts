import * as tf from '../../tf.js';
import type { Padding } from '../net.js';
import { axisGeometry, extent, tfPadding } from '../ops/geometry.js';

/**
 * Ops whose gradient is taken with respect to the INPUT only, written with fast forward kernels.
 *
 * Convolutions whose gradient is taken with respect to the INPUT only, written with forward
 * convolution kernels. Attacks never need filter gradients; the stock gradients of the fused ops
 * compute them anyway, and the wasm backend lacks DepthwiseConv2dNativeBackpropInput altogether.
 * The input gradient of a strided convolution is a stride-1 convolution of the zero-dilated, padded
 * output gradient with the spatially flipped filter (the transposed convolution).
 */

export type { Padding };

/**
 * Inserts (s-1) zeros after every row and column of dy: [N,h,w,C] -> [N,h*s,w*s,C]. The trailing
 * zeros are kept (the caller's padding accounts for them): wasm's Slice kernel is slow.
 */
function dilate(dy: tf.Tensor4D, sh: number, sw: number): tf.Tensor4D {
  if (sh === 1 && sw === 1) return dy;
  const [n, h, w, c] = dy.shape;
  // Rows, then columns, each as a rank-4 pad (WebGL has no shader for rank-6 pads).
  const rows = dy.reshape([n, h, 1, w * c]).pad([
    [0, 0],
    [0, 0],
    [0, sh - 1],
    [0, 0],
  ]);
  return rows
    .reshape([n * h * sh, w, 1, c])
    .pad([
      [0, 0],
      [0, 0],
      [0, sw - 1],
      [0, 0],
    ])
    .reshape([n, h * sh, w * sw, c]);
}

/** Pads (or, when the amount is negative, crops) one spatial axis of t so a 'valid' conv gives `want` rows. */
function fitAxis(before: number, have: number, k: number, want: number): { before: number; after: number } {
  return { before, after: want + k - 1 - have - before };
}

/**
 * dL/dx for y = conv(x) given dL/dy, where `stride1Conv(t)` runs the stride-1 'valid' convolution of
 * t with the flipped (and for Conv2D, in/out-swapped) filter: the transposed convolution, padded so
 * that its output has exactly the input's size.
 */
function inputGradient(
  dy: tf.Tensor4D,
  xShape: number[],
  kernel: [number, number],
  strides: [number, number],
  padding: Padding,
  stride1Conv: (t: tf.Tensor4D) => tf.Tensor4D,
  dilations: [number, number] = [1, 1],
): tf.Tensor4D {
  const [, H, W] = xShape;
  const d = dilate(dy, strides[0], strides[1]);
  // Row p of the padded input gets dilated rows p-e+1 .. p (e: the window's extent): shift by the forward pass's leading pad.
  const [eh, ew] = [extent(kernel[0], dilations[0]), extent(kernel[1], dilations[1])];
  const rows = fitAxis(eh - 1 - axisGeometry(H, kernel[0], strides[0], padding, 0, dilations[0]).before, d.shape[1], eh, H);
  const cols = fitAxis(ew - 1 - axisGeometry(W, kernel[1], strides[1], padding, 1, dilations[1]).before, d.shape[2], ew, W);
  const crop = (a: { before: number; after: number }) => [Math.max(0, -a.before), Math.max(0, -a.after)];
  const [cropTop, cropBottom] = crop(rows);
  const [cropLeft, cropRight] = crop(cols);
  let t = d;
  if (cropTop || cropBottom || cropLeft || cropRight) {
    const [n, h, w, c] = d.shape;
    t = d.slice([0, cropTop, cropLeft, 0], [n, h - cropTop - cropBottom, w - cropLeft - cropRight, c]);
  }
  const pads: [number, number][] = [
    [0, 0],
    [Math.max(0, rows.before), Math.max(0, rows.after)],
    [Math.max(0, cols.before), Math.max(0, cols.after)],
    [0, 0],
  ];
  if (pads[1][0] || pads[1][1] || pads[2][0] || pads[2][1]) t = t.pad(pads);
  return stride1Conv(t);
}

/** Wraps `forward(x)` so that its gradient with respect to x is `backward(dy, xShape)`. */
function withInputGrad<T extends tf.Tensor>(x: T, forward: (x: T) => T, backward: (dy: T, x: T) => T): T {
  type Custom = Parameters<typeof tf.customGrad>[0];
  const f = tf.customGrad(((xi: T, save: tf.GradSaveFunc) => {
    save([xi]);
    return { value: forward(xi), gradFunc: (dy: T, saved: tf.Tensor[]) => backward(dy, saved[0] as T) };
  }) as unknown as Custom);
  return f(x) as T;
}

/**
 * relu6 whose gradient is a product of two Step masks: the stock gradient goes through LessEqual and
 * Cast, which were a fifth of a MobileNet input gradient on wasm.
 */
export function relu6InputGrad<T extends tf.Tensor>(x: T): T {
  return withInputGrad(
    x,
    (xi) => tf.relu6(xi),
    (dy, xi) => tf.mul(dy, tf.mul(tf.step(xi), tf.step(tf.sub(6, xi)))) as T,
  );
}

export type ConvKind = 'conv' | 'depthwise';

/** The backward filter: spatially flipped (and for conv2d, in/out swapped). */
function flipFilter(kind: ConvKind, filter: tf.Tensor4D): tf.Tensor4D {
  const r = tf.reverse(filter, [0, 1]);
  return (kind === 'conv' ? r.transpose([0, 1, 3, 2]) : r) as tf.Tensor4D;
}

function convolve(
  kind: ConvKind,
  t: tf.Tensor4D,
  f: tf.Tensor4D,
  s: [number, number] | 1,
  p: Padding,
  d: [number, number] = [1, 1],
): tf.Tensor4D {
  const pad = tfPadding(p);
  return kind === 'conv' ? tf.conv2d(t, f, s, pad, 'NHWC', d) : tf.depthwiseConv2d(t, f, s, pad, 'NHWC', d);
}

/** dL/dx of a convolution given dL/dy and its flipped filter, from one forward convolution. */
function convInputGradient(
  kind: ConvKind,
  dy: tf.Tensor4D,
  flipped: tf.Tensor4D,
  xShape: number[],
  strides: [number, number],
  padding: Padding,
  dilations: [number, number] = [1, 1],
): tf.Tensor4D {
  return inputGradient(
    dy,
    xShape,
    [flipped.shape[0], flipped.shape[1]],
    strides,
    padding,
    (t) => convolve(kind, t, flipped, 1, 'valid', dilations),
    dilations,
  );
}

/** dL/dx of conv2d(x, filter, strides, padding) given dL/dy, from forward convolutions only. */
export function conv2dInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  xShape: number[],
  strides: [number, number],
  padding: Padding,
): tf.Tensor4D {
  return convInputGradient('conv', dy, flipFilter('conv', filter), xShape, strides, padding);
}

/** dL/dx of depthwiseConv2d(x, filter [kh, kw, C, 1], strides, padding) given dL/dy, from forward convolutions only. */
export function depthwiseInputGradient(
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  xShape: number[],
  strides: [number, number],
  padding: Padding,
): tf.Tensor4D {
  return convInputGradient('depthwise', dy, flipFilter('depthwise', filter), xShape, strides, padding);
}

/**
 * dL/dfilter of conv2d / depthwiseConv2d (depth multiplier 1) given dL/dy, as ONE forward convolution:
 * filter tap (i, j) correlates the input rows i, i+s, ... with dy, so it is a stride-1 convolution of
 * the padded input with dy as the filter, dilated by the stride; the batch becomes the summed axis
 * (conv2d: input channels swap with the batch; depthwise: batch x channels become the channels).
 */
export function convFilterGradient(
  kind: ConvKind,
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: number[],
  strides: [number, number],
  padding: Padding,
): tf.Tensor4D {
  const [kh, kw] = filterShape;
  const [n, H, W, c] = x.shape;
  const [, ho, wo, cout] = dy.shape;
  // The padded input must hold exactly (out - 1) * stride + k rows: pad the front as the forward pass did, fit the end.
  const fit = (size: number, k: number, s: number, out: number, axis: 0 | 1) => {
    const before = axisGeometry(size, k, s, padding, axis).before;
    return { before, after: (out - 1) * s + k - size - before };
  };
  const rows = fit(H, kh, strides[0], ho, 0);
  const cols = fit(W, kw, strides[1], wo, 1);
  let xp = x.pad([
    [0, 0],
    [rows.before, Math.max(0, rows.after)],
    [cols.before, Math.max(0, cols.after)],
    [0, 0],
  ]);
  if (rows.after < 0 || cols.after < 0) xp = xp.slice([0, 0, 0, 0], [n, (ho - 1) * strides[0] + kh, (wo - 1) * strides[1] + kw, c]);
  const dyAsFilter = dy.transpose([1, 2, 0, 3]); // [ho, wo, N, cout]
  if (kind === 'conv') {
    const g = tf.conv2d(xp.transpose([3, 1, 2, 0]) as tf.Tensor4D, dyAsFilter as tf.Tensor4D, 1, 'valid', 'NHWC', strides); // [c, kh, kw, cout]
    return g.transpose([1, 2, 0, 3]);
  }
  if (cout !== c) throw new Error(`depthwise filter gradient: depth multiplier ${cout / c} is not supported (only 1)`);
  const [, hp, wp] = xp.shape;
  const input = xp.transpose([1, 2, 0, 3]).reshape([1, hp, wp, n * c]) as tf.Tensor4D;
  const g = tf.depthwiseConv2d(input, dyAsFilter.reshape([ho, wo, n * c, 1]) as tf.Tensor4D, 1, 'valid', 'NHWC', strides); // [1, kh, kw, N*c]
  return g.reshape([kh, kw, n, c]).sum(2).reshape([kh, kw, c, 1]);
}

export interface InputGradConv {
  apply(x: tf.Tensor4D): tf.Tensor4D;
  /** The filters this op holds (the forward one and its flipped copy for the backward pass). */
  tensors: tf.Tensor[];
}

/**
 * conv2d (filter [kh, kw, in, out]) or depthwise conv (filter [kh, kw, C, 1]) whose input gradient
 * comes from forward kernels; the flipped backward filter is computed once here, not per call.
 */
export function inputGradConv(
  kind: ConvKind,
  filter: tf.Tensor4D,
  strides: [number, number],
  padding: Padding,
  dilations: [number, number] = [1, 1],
): InputGradConv {
  const flipped = tf.tidy(() => flipFilter(kind, filter)); // once here, not per call
  return {
    apply: (x) =>
      withInputGrad(
        x,
        (xi) => convolve(kind, xi, filter, strides, padding, dilations),
        (dy, xi) => convInputGradient(kind, dy, flipped, xi.shape, strides, padding, dilations),
      ),
    tensors: [filter, flipped],
  };
}

/**
 * dL/dx of max pooling, from forward ops only: for each of the k x k window offsets, the inputs at that
 * offset that is its window's first maximum (row-major, as TF and PyTorch pick one argmax) receives
 * the window's dy; the strided contributions are zero-dilated, shifted into place and summed. One
 * argmax, not every tie: a max pooling of a max-pooled map repeats values, and crediting each copy
 * would count one input several times. Why from forward ops: the wasm backend's MaxPoolGrad is wrong whenever pooled values can be negative
 * (2x2/2, 3x3/2 'same', 3x3/1, 2x2/1: off by up to 100% of the cpu reference; TF.js 4.22).
 */
export function maxPoolGradient(
  dy: tf.Tensor4D,
  x: tf.Tensor4D,
  pooled: tf.Tensor4D,
  size: [number, number],
  strides: [number, number],
  padding: Padding,
): tf.Tensor4D {
  const [kh, kw] = size;
  const [sh, sw] = strides;
  const [n, H, W, c] = x.shape;
  const [, ho, wo] = dy.shape;
  const top = axisGeometry(H, kh, sh, padding, 0).before;
  const left = axisGeometry(W, kw, sw, padding, 1).before;
  // The input as the windows see it: padded with a value no max can equal.
  const [hp, wp] = [(ho - 1) * sh + kh, (wo - 1) * sw + kw];
  let xp = x.pad(
    [
      [0, 0],
      [top, Math.max(0, hp - H - top)],
      [left, Math.max(0, wp - W - left)],
      [0, 0],
    ],
    -3.4e38,
  );
  if (xp.shape[1]! > hp || xp.shape[2]! > wp) xp = xp.slice([0, 0, 0, 0], [n, hp, wp, c]);
  const [hc, wc] = [ho * sh + kh, wo * sw + kw];
  let sum: tf.Tensor4D | undefined;
  let taken: tf.Tensor4D | undefined; // 1 where an earlier offset already held the window's max
  for (let a = 0; a < kh; a++)
    for (let b = 0; b < kw; b++) {
      const at = tf.stridedSlice(xp, [0, a, b, 0], [n, a + (ho - 1) * sh + 1, b + (wo - 1) * sw + 1, c], [1, sh, sw, 1]) as tf.Tensor4D;
      const isMax = tf.cast(tf.equal(at, pooled), 'float32') as tf.Tensor4D;
      const first: tf.Tensor4D = taken ? tf.mul(isMax, tf.sub(1, taken)) : isMax;
      taken = taken ? (tf.add(taken, first) as tf.Tensor4D) : first;
      const share = tf.mul(dy, first) as tf.Tensor4D;
      const placed = dilate(share, sh, sw).pad([
        [0, 0],
        [a, hc - a - ho * sh],
        [b, wc - b - wo * sw],
        [0, 0],
      ]) as tf.Tensor4D;
      sum = sum ? (tf.add(sum, placed) as tf.Tensor4D) : placed;
    }
  return sum!.slice([0, top, left, 0], [n, H, W, c]);
}

/** Max pooling whose input gradient is maxPoolGradient (correct on every backend). */
export function maxPoolInputGrad(x: tf.Tensor4D, size: [number, number], strides: [number, number], padding: Padding): tf.Tensor4D {
  // Explicit pads: -infinity rows around a 'valid' pooling, as ONNX and PyTorch pad max pooling.
  const forward = (xi: tf.Tensor4D) =>
    typeof padding === 'string'
      ? tf.maxPool(xi, size, strides, padding)
      : tf.maxPool(xi.pad([[0, 0], padding[0], padding[1], [0, 0]], -3.4e38) as tf.Tensor4D, size, strides, 'valid');
  return withInputGrad(x, forward, (dy, xi) => maxPoolGradient(dy, xi, forward(xi), size, strides, padding));
}
