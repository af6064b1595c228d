import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { linearClassifier, tinyNet } from './helpers.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const shape: [number, number, number] = [1, 2, 2];
// Two classes: f1 - f0 = w . x + b with w = (1, 2, -2, 0.5), b = -3.
const w = [1, 2, -2, 0.5];
const binary = () => linearClassifier([[0, 0, 0, 0], w], [3, 0], shape);
const x0 = [1, 0.5, 0.25, 2]; // w.x = 1 + 1 - 0.5 + 1 = 2.5; f = 2.5 - 3 = -0.5 -> class 0

describe('DeepFool on a linear classifier (closed form)', () => {
  it('L2: r = (|f|/||w||_2 + 1e-4)(1 + overshoot) w/||w||_2, one step', async () => {
    const m = binary();
    const res = await deepfool(m, batchOfTensor(tf.tensor4d(x0, [1, ...shape])), { norm: 2, overshoot: 0.02, candidates: 2 });
    const n2 = Math.hypot(...w);
    const expected = w.map((wi) => (0.5 / n2 + 1e-4) * 1.02 * (wi / n2));
    const r = Array.from(res.r);
    r.forEach((ri, i) => expect(ri).toBeCloseTo(expected[i], 5));
    expect(res.status[0]).toBe('converged');
    expect(res.steps[0]).toBe(1);
    expect(res.fromLabel[0]).toBe(0);
    expect(res.toLabel[0]).toBe(1);
  });
  it('Linf: r = (|f|/||w||_1 + 1e-4)(1 + overshoot) sign(w)', async () => {
    const m = binary();
    const res = await deepfool(m, batchOfTensor(tf.tensor4d(x0, [1, ...shape])), { norm: 'inf', overshoot: 0.02, candidates: 2 });
    const n1 = w.reduce((a, b) => a + Math.abs(b), 0);
    const expected = w.map((wi) => (0.5 / n1 + 1e-4) * 1.02 * Math.sign(wi));
    Array.from(res.r).forEach((ri, i) => expect(ri).toBeCloseTo(expected[i], 5));
    expect(res.status[0]).toBe('converged');
  });
  it('multi-class: moves towards the closest linearised boundary', async () => {
    // class 0 wins at x = 0 by margins 1 (class 1, along +e0) and 4 (class 2, along +e1).
    const W = [
      [0, 0, 0, 0],
      [1, 0, 0, 0],
      [0, 1, 0, 0],
    ];
    const m = linearClassifier(W, [2, 1, -2], shape);
    const res = await deepfool(m, batchOfTensor(tf.zeros([1, ...shape]) as tf.Tensor4D), { norm: 2, candidates: 3 });
    const r = Array.from(res.r);
    expect(r[0]).toBeGreaterThan(1);
    expect(r[1]).toBeCloseTo(0, 6);
    expect(res.toLabel[0]).toBe(1);
  });
  it('batched: each image gets the same answer as alone', async () => {
    const m = tinyNet([4, 4, 3], 5);
    const x = tf.randomUniform([6, 4, 4, 3], 0, 255, 'float32', 9) as tf.Tensor4D;
    const all = await deepfool(m, batchOfTensor(x), { candidates: 4 });
    for (let i = 0; i < 6; i++) {
      const one = await deepfool(m, batchOfTensor(x.slice([i], [1]) as tf.Tensor4D), { candidates: 4 });
      expect(one.status[0]).toBe(all.status[i]);
      expect(one.steps[0]).toBe(all.steps[i]);
      const a = all.r.subarray(i * 48, (i + 1) * 48);
      one.r.forEach((v, j) => expect(v).toBeCloseTo(a[j], 3));
    }
    // Every converged image really changes label at x + r.
    const pred = tf.argMax(m.logits(tf.add(x, tf.tensor4d(all.r, x.shape)) as tf.Tensor4D), 1).dataSync();
    all.status.forEach((s, i) => s === 'converged' && expect(pred[i]).not.toBe(all.fromLabel[i]));
  });
});

describe('DeepFool edge cases', () => {
  it('an image not of the given label is returned untouched with status "already"', async () => {
    const m = binary();
    const res = await deepfool(m, batchOfTensor(tf.tensor4d(x0, [1, ...shape])), { labels: Int32Array.from([1]), candidates: 2 });
    expect(res.status[0]).toBe('already');
    expect(Array.from(res.r)).toEqual([0, 0, 0, 0]);
    expect(res.steps[0]).toBe(0);
  });
  it('zero gradient: flagged, no NaN, no step', async () => {
    const m = linearClassifier(
      [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ],
      [1, 0],
      shape,
    );
    const res = await deepfool(m, batchOfTensor(tf.tensor4d(x0, [1, ...shape])), { candidates: 2 });
    expect(res.status[0]).toBe('zeroGradient');
    const r = Array.from(res.r);
    expect(r.every((v) => v === 0)).toBe(true);
  });
  it('step cap: reports maxSteps when the boundary cannot be reached in time', async () => {
    const m = tinyNet([4, 4, 3], 5);
    const x = tf.randomUniform([4, 4, 4, 3], 0, 255, 'float32', 5) as tf.Tensor4D;
    const res = await deepfool(m, batchOfTensor(x), { maxSteps: 1, overshoot: 0, candidates: 5 });
    for (const s of res.status) expect(['converged', 'maxSteps']).toContain(s);
    expect(Array.from(res.r).every(Number.isFinite)).toBe(true);
  });
  it('creates no TF.js tensors: its steps stay plain arrays', async () => {
    const m = tinyNet([4, 4, 3], 5);
    const x = batchOfTensor(tf.randomUniform([5, 4, 4, 3], 0, 255, 'float32', 3) as tf.Tensor4D);
    await deepfool(m, x, { candidates: 4 }); // first call may create lazily-cached constants
    const before = tf.memory().numTensors;
    const res = await deepfool(m, x, { candidates: 4, maxSteps: 3 });
    expect(res.r).toBeInstanceOf(Float32Array);
    expect(tf.memory().numTensors).toBe(before);
  });
});
