import { expect } from 'vitest';
import * as tf from '../src/tf.js';
import { allSamples, sampleNet, SAMPLE_INPUT, maxRelativeDifference } from '../src/engine/selfcheck.js';
import { inferShapes } from '../src/engine/shapes.js';
import type { Net } from '../src/engine/net.js';
import type { Runtime } from '../src/engine/runtime.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';

/**
 * The per-op test harness that ops.test.ts (the CPU engine, TF.js wasm) and webgpu.test.ts (the GPU
 * engine) share: every sample of every op wrapped by sampleNet (image inputs also in NCHW storage), its
 * inputs, K cotangents per image, and the comparison of a runtime with TF.js cpu's references.
 */

export const samples = allSamples().flatMap(({ kind, sample }) => [
  { title: `${kind}: ${sample.name}`, net: sampleNet(sample) },
  // Ops that take images also run on NCHW storage (the layout after a convolution in an ONNX export).
  ...(sample.inputs.some((s) => s.length === 3) ? [{ title: `${kind}: ${sample.name} (NCHW storage)`, net: sampleNet(sample, true) }] : []),
]);
/**
 * A sample's seed, from its title: adding a sample (or an activation) leaves every other sample's inputs
 * as they were, so a finite difference that steps over a kink shows up in the sample that was added.
 */
export function seedOf(title: string): number {
  let h = 2166136261;
  for (const c of title) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h % 100_000;
}
export const N = 2;
export const K = 2;
export const outSize = (net: Net) => inferShapes(net, SAMPLE_INPUT).get(net.output)![0];
export const input = (seed: number) => tf.randomUniform([N, ...SAMPLE_INPUT], -2, 2, 'float32', seed) as tf.Tensor4D;
/** K cotangents per image, [N, K, out]. */
export const cotangents = (m: number, seed: number) => Float32Array.from({ length: N * K * m }, (_, i) => Math.sin(i * 1.7 + seed));
/** Cotangent j of every image, [N, out]. */
export const column = (dy: Float32Array, m: number, j: number) =>
  Float32Array.from({ length: N * m }, (_, t) => dy[(Math.floor(t / m) * K + j) * m + (t % m)]);

/** TF.js cpu's logits and input gradient per cotangent column: the reference. */
export type Reference = { logits: number[]; dx: number[] }[];

/**
 * A runtime's logits (vjp and forward, 1e-5 relative) and its K gradients per image (1e-4) equal the
 * reference: the bounds of float32 in another summation order.
 */
export async function expectRuntimeMatches(rt: Runtime, x: tf.Tensor4D, dy: Float32Array, ref: Reference): Promise<void> {
  const r = await rt.vjp(batchOfTensor(x), dy);
  expect(maxRelativeDifference(r.logits, ref[0].logits)).toBeLessThan(1e-5);
  expect(maxRelativeDifference(await rt.forward(batchOfTensor(x)), ref[0].logits)).toBeLessThan(1e-5);
  const per = SAMPLE_INPUT.reduce((a, b) => a * b, 1);
  for (let j = 0; j < K; j++)
    for (let n = 0; n < N; n++) {
      const got = r.dx.subarray((n * K + j) * per, (n * K + j + 1) * per);
      const want = ref[j].dx.slice(n * per, (n + 1) * per);
      expect(maxRelativeDifference(got, want), `image ${n}, cotangent ${j}`).toBeLessThan(1e-4);
    }
}
