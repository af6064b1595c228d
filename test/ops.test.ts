import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import './helpers.js';
import { SAMPLE_INPUT, tfjsVjp, maxRelativeDifference } from '../src/engine/selfcheck.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { loadOrt, onnxRuntime } from '../src/engine/onnx/runtime.js';
import { initBackend } from '../src/engine/backend.js';
import { OPS } from '../src/engine/ops/registry.js';
import type { Net } from '../src/engine/net.js';
import { samples, seedOf, N, K, outSize, input, cotangents, column, expectRuntimeMatches } from './opSamples.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';

/**
 * Generated from the op registry: every sample of every op, wrapped by sampleNet (image inputs also in
 * NCHW storage), must give on ONNX Runtime (hand-built backward graph) and on TF.js wasm the logits and
 * input gradients of TF.js's cpu autodiff, and that gradient must agree with finite differences of the
 * forward pass.
 */

/** cpu references per sample and per cotangent column. */
const refs = new Map<string, { logits: number[]; dx: number[] }[]>();

describe('the op registry', () => {
  it('every op kind has samples, and every sample network has a shape', () => {
    for (const def of Object.values(OPS)) expect(def.samples.length, def.kind).toBeGreaterThan(0);
    for (const s of samples) expect(outSize(s.net), s.title).toBeGreaterThan(0);
  });
});

describe('every op sample on TF.js cpu: autodiff agrees with finite differences', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  it.each(samples.map((s, i) => [s.title, i] as const))('%s', (title, i) => {
    const { net } = samples[i];
    const m = outSize(net);
    const x = input(seedOf(title));
    const dy = cotangents(m, seedOf(title));
    const cols = Array.from({ length: K }, (_, j) => tfjsVjp(net, SAMPLE_INPUT, x, column(dy, m, j)));
    refs.set(title, cols);
    // Directional derivative of L(x) = sum(dy * f(x)) along u, central differences in float32. A step
    // that crosses a kink (ReLU, max) changes the difference quotient with the step size: then another
    // direction is drawn, so that the check does not hang on where a seed happens to put the inputs.
    const g = netToTfGraph(net, SAMPLE_INPUT);
    const tol = (v: number) => 2e-2 * Math.max(1, Math.abs(v));
    let checked = false;
    for (let attempt = 0; attempt < 6 && !checked; attempt++) {
      const u = tf.randomUniform(x.shape, -1, 1, 'float32', seedOf(title) + 100_000 + attempt);
      const L = (eps: number) =>
        tf.tidy(() => tf.sum(tf.mul(runPlainGraph(g, tf.add(x, tf.mul(u, eps))), tf.tensor(column(dy, m, 0), [N, m]))).dataSync()[0]);
      const [l0, lPlus, lMinus, lHalfPlus, lHalfMinus] = [0, 1e-2, -1e-2, 5e-3, -5e-3].map(L);
      const numeric = (lPlus - lMinus) / 2e-2;
      const half = (lHalfPlus - lHalfMinus) / 1e-2;
      // Either side's slope over the small step, and the two step sizes, agree where f is smooth.
      const sides = Math.abs((lHalfPlus - l0) / 5e-3 - (l0 - lHalfMinus) / 5e-3);
      const analytic = tf.tidy(() => tf.sum(tf.mul(tf.tensor(cols[0].dx, x.shape), u)).dataSync()[0]);
      u.dispose();
      if (Math.abs(numeric - half) > tol(numeric) / 2 || sides > tol(numeric)) continue;
      expect(Math.abs(numeric - analytic), `numeric ${numeric} vs autodiff ${analytic}`).toBeLessThan(tol(analytic));
      checked = true;
    }
    expect(checked, 'every direction drawn crossed a kink').toBe(true);
    tf.dispose([x, ...g.owned]);
  });
});

const ortPresent = (await loadOrt()) !== null;

describe.skipIf(!ortPresent)('every op sample on ONNX Runtime (K cotangents per image) equals TF.js cpu', () => {
  it.each(samples.map((s, i) => [s.title, i] as const))('%s', async (title, i) => {
    const { net } = samples[i];
    const m = outSize(net);
    const x = input(seedOf(title));
    const dy = cotangents(m, seedOf(title));
    const rt = (await onnxRuntime(net, SAMPLE_INPUT, { layout: { workers: 1, threadsPerWorker: 1 } }))!;
    try {
      await expectRuntimeMatches(rt, x, dy, refs.get(title)!);
    } finally {
      x.dispose();
      await rt.dispose();
    }
  });
});

describe('every op sample on TF.js wasm (the custom input gradients) equals TF.js cpu', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });
  it.each(samples.map((s, i) => [s.title, i] as const))('%s', (title, i) => {
    const { net } = samples[i];
    const m = outSize(net);
    const x = input(seedOf(title));
    const got = tfjsVjp(net, SAMPLE_INPUT, x, column(cotangents(m, seedOf(title)), m, 0));
    const want = refs.get(title)![0];
    expect(maxRelativeDifference(got.logits, want.logits)).toBeLessThan(1e-4);
    expect(maxRelativeDifference(got.dx, want.dx)).toBeLessThan(1e-4);
    x.dispose();
  });
});

describe('max pooling of a max-pooled map (GoogLeNet): one argmax per window, as TF and PyTorch', () => {
  // Overlapping 3x3/2 windows repeat values, so the 3x3/1 pooling after them sees structural ties:
  // crediting every tied copy would count one input twice. Reference: TF.js cpu's own MaxPoolGrad.
  const shape: [number, number, number] = [9, 9, 2];
  const net: Net = {
    input: 'x',
    output: 'flat',
    nodes: [
      { name: 'p1', inputs: ['x'], op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'valid' } },
      {
        name: 'p2',
        inputs: ['p1'],
        op: {
          kind: 'pool',
          mode: 'max',
          size: [3, 3],
          strides: [1, 1],
          padding: [
            [1, 1],
            [1, 1],
          ],
        },
      },
      { name: 'flat', inputs: ['p2'], op: { kind: 'reshape', shape: [-1] } },
    ],
  };
  const m = 4 * 4 * 2;
  const x = () => tf.randomUniform([N, ...shape], -2, 2, 'float32', 7) as tf.Tensor4D;
  const dy = Float32Array.from({ length: N * m }, (_, i) => Math.cos(i * 0.9));
  const native = () =>
    tf.tidy(() => {
      const f = (t: tf.Tensor) => {
        const p1 = tf.maxPool(t as tf.Tensor4D, 3, 2, 'valid');
        const p2 = tf.maxPool(
          tf.pad(
            p1,
            [
              [0, 0],
              [1, 1],
              [1, 1],
              [0, 0],
            ],
            -3.4e38,
          ) as tf.Tensor4D,
          3,
          1,
          'valid',
        );
        return tf.sum(tf.mul(tf.reshape(p2, [N, m]), tf.tensor(dy, [N, m])));
      };
      return Array.from(tf.grad(f)(x()).dataSync());
    });
  let want: number[];
  beforeAll(async () => {
    await tf.setBackend('cpu');
    want = native();
  });
  it('on TF.js', () => {
    const t = x();
    expect(maxRelativeDifference(tfjsVjp(net, shape, t, dy).dx, want)).toBeLessThan(1e-5);
    t.dispose();
  });
  it.skipIf(!ortPresent)('on ONNX Runtime', async () => {
    const rt = (await onnxRuntime(net, shape, { layout: { workers: 1, threadsPerWorker: 1 } }))!;
    const t = x();
    try {
      expect(maxRelativeDifference((await rt.vjp(batchOfTensor(t), dy)).dx, want)).toBeLessThan(1e-5);
    } finally {
      t.dispose();
      await rt.dispose();
    }
  });
});
