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
 * A convolution filter [O, I, kh, kw] (ONNX layout) in the order ONNX Runtime's blocked convolution
 * reads it: [O/b, I/b, kh, kw, b (in), b (out)] where the input is blocked (I a multiple of b), and
 * [O/b, I, kh, kw, b (out)] where it is not (a depthwise filter, I = 1, or fewer than b input channels).
 * O must be a multiple of b.
 */
export function reorderFilter(w: Float32Array, [O, I, kh, kw]: number[], b: number): Float32Array {
  const out = new Float32Array(w.length);
  const taps = kh * kw;
  const at = (o: number, i: number, t: number) => w[(o * I + i) * taps + t];
  let k = 0;
  if (I % b === 0 && I >= b) {
    for (let ob = 0; ob < O / b; ob++)
      for (let ib = 0; ib < I / b; ib++)
        for (let t = 0; t < taps; t++)
          for (let ii = 0; ii < b; ii++) for (let oo = 0; oo < b; oo++) out[k++] = at(ob * b + oo, ib * b + ii, t);
  } else {
    for (let ob = 0; ob < O / b; ob++)
      for (let i = 0; i < I; i++) for (let t = 0; t < taps; t++) for (let oo = 0; oo < b; oo++) out[k++] = at(ob * b + oo, i, t);
  }
  return out;
}
