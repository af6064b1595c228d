import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { ALGORITHM1_VARIANTS, computeAlgorithm1, ALGORITHM1_DEFAULTS, type Algorithm1Options } from '../src/attacks/universal.js';
import { ImageSet } from '../src/data/dataset.js';
import { lpNorm } from '../src/math/lp.js';
import { foolingRate, scorePredictions, predictSet } from '../src/evaluation/scoring.js';
import { perturb } from '../src/math/perturb.js';
import { AbortedError, UsageError } from '../src/errors.js';
import { tinyNet, randomImages, linearClassifier } from './helpers.js';
import { folderCheckpoints } from '../src/io/checkpoint.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const shape: [number, number, number] = [6, 6, 3];
const opts = (o: Partial<Algorithm1Options>): Algorithm1Options => ({
  ...ALGORITHM1_DEFAULTS,
  xi: 300,
  norm: 2,
  batchSize: 5,
  candidates: 4,
  delta: 0,
  maxPasses: 3,
  ...o,
});
const tmp = () => mkdtempSync(join(tmpdir(), 'uap-test-'));

describe('Algorithm 1 (universal perturbation)', () => {
  const model = tinyNet(shape, 6);
  const X = randomImages(24, shape);

  it.each([
    [2, 300, 'accumulated'],
    ['inf', 12, 'accumulated'],
    [2, 300, 'paper'],
    ['inf', 12, 'paper'],
  ] as const)('norm %s, %s: ||v|| never exceeds xi after any pass, and fools more as it goes', async (p, xi, variant) => {
    const norms: number[] = [];
    const res = await computeAlgorithm1(model, X, opts({ norm: p, xi, ...ALGORITHM1_VARIANTS[variant] }), {
      onPass: (r) => {
        norms.push(p === 2 ? r.normL2 : r.normInf);
      },
    });
    for (const n of norms) expect(n).toBeLessThanOrEqual(xi * (1 + 1e-5));
    expect(lpNorm(res.v, p)).toBeLessThanOrEqual(xi * (1 + 1e-5));
    expect(res.history.length).toBe(3);
    expect(res.foolingRate).toBeGreaterThan(0.3);
    expect(res.converged).toBe(false);
    expect(res.stopReason).toMatch(/pass cap/);
  });

  it('accumulated, closed form on a linear classifier: v is xi along the boundary normal, and fools exactly the images within xi of it', async () => {
    // f1 - f0 = x[0] - 100: every image is class 0, and DeepFool's direction is e0 for all of them.
    const linear = linearClassifier(
      [
        [0, 0, 0, 0],
        [1, 0, 0, 0],
      ],
      [0, -100],
      [2, 2, 1],
    );
    const px = new Uint8Array(10 * 4);
    for (let i = 0; i < 10; i++) px.set([i * 10, 7 * i, 200, 3], i * 4);
    const set = new ImageSet(
      [2, 2, 1],
      px,
      Array.from({ length: 10 }, (_, i) => ({ path: `x${i}` })),
    );
    const res = await computeAlgorithm1(linear, set, {
      ...ALGORITHM1_DEFAULTS,
      norm: 2,
      xi: 50,
      candidates: 2,
      batchSize: 3,
      maxPasses: 1,
      delta: 0,
    });
    const v = Array.from(res.v.dataSync());
    expect(v[0]).toBeCloseTo(50, 4);
    expect(v.slice(1)).toEqual([0, 0, 0]);
    expect(res.foolingRate).toBeCloseTo(0.4, 10); // x[0] = 60, 70, 80, 90 cross; 50 lands on the boundary, where class 0 wins the tie
    linear.dispose();
  });

  it('stops as soon as the fooling rate reaches 1 - delta, and says so', async () => {
    const res = await computeAlgorithm1(model, X, opts({ delta: 0.9, maxPasses: 5 }));
    expect(res.converged).toBe(true);
    expect(res.passes).toBe(1);
    expect(res.foolingRate).toBeGreaterThanOrEqual(0.1);
    expect(res.stopReason).toMatch(/1 - delta/);
  });

  it('the same seed gives the same v; another seed gives another', async () => {
    const a = await computeAlgorithm1(model, X, opts({ seed: 5, maxPasses: 2 }));
    const b = await computeAlgorithm1(model, X, opts({ seed: 5, maxPasses: 2 }));
    const c = await computeAlgorithm1(model, X, opts({ seed: 6, maxPasses: 2 }));
    expect(Array.from(b.v.dataSync())).toEqual(Array.from(a.v.dataSync()));
    expect(Array.from(c.v.dataSync())).not.toEqual(Array.from(a.v.dataSync()));
  });

  it('a run resumed from its checkpoint ends exactly where an unbroken run ends', async () => {
    const full = await computeAlgorithm1(model, X, opts({ maxPasses: 3 }));
    const dir = tmp();
    await computeAlgorithm1(model, X, opts({ maxPasses: 1 }), { checkpoints: folderCheckpoints(dir) });
    expect(existsSync(join(dir, 'checkpoint-1.npy'))).toBe(true);
    const resumed = await computeAlgorithm1(model, X, opts({ maxPasses: 3 }), { checkpoints: folderCheckpoints(dir), resume: true });
    expect(resumed.history.map((h) => h.pass)).toEqual([1, 2, 3]);
    expect(Array.from(resumed.v.dataSync())).toEqual(Array.from(full.v.dataSync()));
    expect(resumed.foolingRate).toBe(full.foolingRate);
  });

  it('a run aborted mid-pass and resumed ends exactly where an unbroken run ends', async () => {
    const full = await computeAlgorithm1(model, X, opts({ maxPasses: 3 }));
    const dir = tmp();
    const ctl = new AbortController();
    await expect(
      computeAlgorithm1(model, X, opts({ maxPasses: 3 }), {
        checkpoints: folderCheckpoints(dir),
        signal: ctl.signal,
        onProgress: (p) => p.pass === 2 && p.done >= 10 && ctl.abort(),
      }),
    ).rejects.toThrow(/pass 1 is in the checkpoint/);
    const resumed = await computeAlgorithm1(model, X, opts({ maxPasses: 3 }), { checkpoints: folderCheckpoints(dir), resume: true });
    expect(Array.from(resumed.v.dataSync())).toEqual(Array.from(full.v.dataSync()));
    expect(existsSync(join(dir, 'checkpoint-1.npy'))).toBe(false); // superseded files are removed
    expect(existsSync(join(dir, 'checkpoint-3.npy'))).toBe(true);
  });

  it('a corrupt checkpoint is a clear error', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'checkpoint.json'), '{ not json');
    await expect(computeAlgorithm1(model, X, opts({}), { checkpoints: folderCheckpoints(dir), resume: true })).rejects.toThrow(
      /checkpoint .*checkpoint\.json: unreadable/,
    );
  });

  it('refuses to resume with different settings', async () => {
    const dir = tmp();
    await computeAlgorithm1(model, X, opts({ maxPasses: 1 }), { checkpoints: folderCheckpoints(dir) });
    await expect(computeAlgorithm1(model, X, opts({ xi: 100 }), { checkpoints: folderCheckpoints(dir), resume: true })).rejects.toThrow(
      /xi=300, not 100/,
    );
  });

  it('an aborted run throws AbortedError and keeps the last pass checkpoint', async () => {
    const dir = tmp();
    const ctl = new AbortController();
    const run = computeAlgorithm1(model, X, opts({ maxPasses: 3 }), {
      checkpoints: folderCheckpoints(dir),
      signal: ctl.signal,
      onPass: (r) => {
        if (r.pass === 1) ctl.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(AbortedError);
    const resumed = await computeAlgorithm1(model, X, opts({ maxPasses: 1 }), { checkpoints: folderCheckpoints(dir), resume: true });
    expect(resumed.passes).toBe(1);
  });

  it('memory stays flat: a run leaves only v behind, however many passes', async () => {
    (await computeAlgorithm1(model, X, opts({ maxPasses: 1 }))).v.dispose();
    const before = tf.memory().numTensors;
    const res = await computeAlgorithm1(model, X, opts({ maxPasses: 3 }));
    expect(tf.memory().numTensors).toBe(before + 1);
    res.v.dispose();
  });

  it('reports progress for every batch', async () => {
    const seen: number[] = [];
    await computeAlgorithm1(model, X, opts({ maxPasses: 1 }), { onProgress: (p) => seen.push(p.done) });
    expect(seen).toEqual([5, 10, 15, 20, 24]);
  });

  it('rejects bad options with the flag name', async () => {
    await expect(computeAlgorithm1(model, X, opts({ xi: -1 }))).rejects.toThrow(/^xi: expected a positive number/);
    await expect(computeAlgorithm1(model, X, opts({ norm: 3 as unknown as 2 }))).rejects.toThrow(/^norm: expected 2 or inf/);
    await expect(computeAlgorithm1(model, X, opts({ delta: 1 }))).rejects.toThrow(UsageError);
    await expect(computeAlgorithm1(model, X, opts({ projection: 'both' as 'sum' }))).rejects.toThrow(
      /^projection: expected sum or each, got both/,
    );
    await expect(computeAlgorithm1(model, X, opts({ steps: 'huge' as 'unit' }))).rejects.toThrow(/^steps: expected unit or minimal/);
    await expect(computeAlgorithm1(model, X, opts({ stepSize: 0 }))).rejects.toThrow(/^stepSize: expected a positive number/);
    await expect(computeAlgorithm1(model, randomImages(2, [5, 5, 3]), opts({}))).rejects.toThrow(
      /images are 5x5x3 but model tiny takes 6x6x3/,
    );
  });
});

describe('fooling rate arithmetic', () => {
  it('counts label changes against the clean predictions, not the ground truth', async () => {
    const clean = Int32Array.from([0, 1, 2, 3]);
    const adv = Int32Array.from([0, 2, 2, 0]);
    expect(foolingRate(clean, adv)).toBe(0.5);
    const labels = Int32Array.from([0, 1, 5, 0]); // image 2 and 3 misclassified when clean
    const ev = scorePredictions(clean, adv, labels);
    expect(ev.cleanAccuracy).toBe(0.5);
    expect(ev.perturbedAccuracy).toBe(0.5); // images 0 and 3 (fooled into the right label)
    expect(ev.foolingRateOnCorrect).toBe(0.5); // of the correct images 0, 1 only 1 changed
  });
  it('with no correctly classified image the rate among them is absent, not 0%', () => {
    const ev = scorePredictions(Int32Array.from([0, 1]), Int32Array.from([1, 1]), Int32Array.from([2, 2]));
    expect(ev.cleanAccuracy).toBe(0);
    expect(ev.foolingRateOnCorrect).toBeUndefined();
    expect(JSON.parse(JSON.stringify(ev))).not.toHaveProperty('foolingRateOnCorrect');
  });
  it('perturbed images stay in [0, 255]', async () => {
    const x = tf.tensor4d([0, 10, 250, 255], [1, 2, 2, 1]);
    const v = tf.tensor3d([-5, 300, 10, -1], [2, 2, 1]);
    expect(Array.from(perturb(x, v).dataSync())).toEqual([0, 255, 255, 254]);
  });
  it('predictSet batches give the same labels as one batch', async () => {
    const m = tinyNet(shape, 6);
    const X = randomImages(11, shape);
    expect(Array.from(await predictSet(m, X, null, 4))).toEqual(Array.from(await predictSet(m, X, null, 11)));
  });
});
