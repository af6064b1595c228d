import { NCHWC_DOMAIN, OnnxGraph } from './builder.js';

/**
 * ONNX Runtime's blocked layout on the CPU (NCHWc): channels in blocks of b (8 with AVX2, 16 with
 * AVX-512), a value [N, C, H, W] stored as [N, C/b, H, W, b]. Its optimiser rewrites convolutions
 * into kernels of that layout, with a reorder before and after wherever a neighbour is not one of the
 * few ops it can block. A gradient graph's element-wise steps (activation masks applied to every
 * backward row) are not among them, so each cost two reorders per row; written directly in the
 * blocked layout (the kernels of the `com.microsoft.nchwc` domain, which ONNX Runtime's saved
 * optimised models also hold), those steps read the blocked values as they are: an element-wise op
 * does not care how its operands are ordered as long as both are ordered alike.
 */

/** The block size of this machine's ONNX Runtime (0: it has no blocked kernels), found once per process. */
let block: Promise<number> | undefined;
let known = 0;

/**
 * The channel block ONNX Runtime's CPU kernels use here: a ReorderInput of a four-channel value (the
 * fewest it takes) pads it to one block. 0 where the kernel is missing or the answer is not a block size.
 */
export function detectNchwcBlock(ort: typeof import('onnxruntime-node')): Promise<number> {
  block ??= (async () => {
    const g = new OnnxGraph();
    g.opMulti('ReorderInput', ['x'], ['y'], {}, NCHWC_DOMAIN);
    const model = g.encode([['x', [1, 4, 1, 1]]], [['y', [1, 'B', 1, 1]]]);
    try {
      const s = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 });
      const y = (await s.run({ x: new ort.Tensor('float32', new Float32Array(4), [1, 4, 1, 1]) })).y;
      await s.release();
      const b = y.dims[1];
      // 8 (AVX2) and 16 (AVX-512) are MLAS's blocks; an answer of 4 could as well be no blocking at all.
      known = b === 8 || b === 16 ? b : 0;
    } catch {
      known = 0;
    }
    return known;
  })();
  return block;
}

/**
 * The block size found by detectNchwcBlock (0 before it has answered, or where there is none);
 * `UAP_NCHWC=off` gives 0 (the gradient graphs written as before blocking, for measuring).
 */
export function nchwcBlock(): number {
  return process.env.UAP_NCHWC === 'off' ? 0 : known;
}

/**
 * Channels as a blocked value stores them: rounded up to whole blocks. ONNX Runtime's ReorderInput pads
 * a value of C channels (a multiple of 4) with zero channels up to this count, and its blocked kernels
 * take only whole blocks; ReorderOutput (told C) drops them again.
 */
export const paddedChannels = (c: number, b: number): number => Math.ceil(c / b) * b;

/**
 * Whether a value of `c` channels may be held blocked with block `b`: ReorderInput takes multiples of 4
 * (a block of 16 holds 24 channels as 32, the last 8 zero in every value the graph feeds a convolution).
 */
export const blockableChannels = (c: number, b: number): boolean => b > 0 && c % 4 === 0;

/**
 * A convolution filter [O, I, kh, kw] (ONNX layout) in the order ONNX Runtime's blocked convolution
 * reads it, zero-padded to whole blocks (paddedChannels): [O'/b, I'/b, kh, kw, b (in), b (out)] for a
 * blocked input, or [O'/b, 1, kh, kw, b (out)] for a depthwise filter (I = 1, one group per channel).
 * The padded rows and columns are zero, so padded channels never reach a real one.
 */
export function reorderFilter(w: Float32Array, [O, I, kh, kw]: number[], b: number, depthwise = I === 1): Float32Array {
  const taps = kh * kw;
  const Op = paddedChannels(O, b);
  const at = (o: number, i: number, t: number) => (o < O && i < I ? w[(o * I + i) * taps + t] : 0);
  if (depthwise) {
    const out = new Float32Array(Op * I * taps);
    let k = 0;
    for (let ob = 0; ob < Op / b; ob++)
      for (let i = 0; i < I; i++) for (let t = 0; t < taps; t++) for (let oo = 0; oo < b; oo++) out[k++] = at(ob * b + oo, i, t);
    return out;
  }
  const Ip = paddedChannels(I, b);
  const out = new Float32Array(Op * Ip * taps);
  let k = 0;
  for (let ob = 0; ob < Op / b; ob++)
    for (let ib = 0; ib < Ip / b; ib++)
      for (let t = 0; t < taps; t++)
        for (let ii = 0; ii < b; ii++) for (let oo = 0; oo < b; oo++) out[k++] = at(ob * b + oo, ib * b + ii, t);
  return out;
}

/** The filter's logical dims as the blocked kernel checks them: [O', I' (or 1 for depthwise), kh, kw]. */
export const paddedFilterDims = ([O, I, kh, kw]: number[], b: number, depthwise = I === 1): number[] => [
  paddedChannels(O, b),
  depthwise ? I : paddedChannels(I, b),
  kh,
  kw,
];

/** A bias of C values zero-padded to whole blocks. */
export function padBias(bias: Float32Array, b: number): Float32Array {
  const out = new Float32Array(paddedChannels(bias.length, b));
  out.set(bias);
  return out;
}
