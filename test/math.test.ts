import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import { projectLp, lpNorm, batchNorm, parseNorm } from '../src/math/lp.js';
import { Rng, passSeed } from '../src/math/random.js';
import { randomPerturbation } from '../src/math/noise.js';
import { takeRows } from '../src/math/rows.js';
import { wilsonInterval, ratesDiffer } from '../src/math/interval.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

describe('projection onto Lp balls', () => {
  it('L2: rescales a vector outside the ball onto its surface and keeps its direction', async () => {
    const v = tf.tensor1d([3, 4]); // norm 5
    const p = projectLp(v, 2, 2.5);
    expect(Array.from(p.dataSync())).toEqual([expect.closeTo(1.5, 6), expect.closeTo(2, 6)]);
    expect(lpNorm(p, 2)).toBeCloseTo(2.5, 5);
  });
  it('L2: leaves a vector inside the ball unchanged', async () => {
    const v = tf.tensor1d([0.3, -0.4]);
    expect(Array.from(projectLp(v, 2, 1).dataSync())).toEqual(Array.from(v.dataSync()));
  });
  it('Linf: clips each coordinate to [-xi, xi]', async () => {
    const p = projectLp(tf.tensor1d([12, -30, 5, -9.5]), 'inf', 10);
    expect(Array.from(p.dataSync())).toEqual([10, -10, 5, -9.5]);
  });
  it('is idempotent and never exceeds xi on random inputs', async () => {
    const rng = new Rng(3);
    for (const p of [2, 'inf'] as const) {
      for (let t = 0; t < 20; t++) {
        const v = tf.tensor1d(Array.from({ length: 50 }, () => rng.normal() * 100));
        const xi = 1 + rng.next() * 50;
        const once = projectLp(v, p, xi);
        expect(lpNorm(once, p)).toBeLessThanOrEqual(xi * (1 + 1e-6));
        const twice = projectLp(once, p, xi);
        const a = once.dataSync(),
          b = twice.dataSync();
        a.forEach((x, i) => expect(b[i]).toBeCloseTo(x, 4));
      }
    }
  });
  it('the zero vector stays zero (no division by zero)', async () => {
    expect(Array.from(projectLp(tf.zeros([3]), 2, 1).dataSync())).toEqual([0, 0, 0]);
  });
});

describe('library arguments', () => {
  it('projectLp and randomPerturbation refuse unknown norms and negative, NaN or infinite radii', () => {
    const v = tf.ones([2, 2, 1]);
    expect(() => projectLp(v, 3 as never, 1)).toThrow(/projectLp: norm 3: expected 2 or 'inf'/);
    for (const xi of [-1, NaN, Infinity]) expect(() => projectLp(v, 2, xi)).toThrow(/projectLp: radius .*: expected a finite number >= 0/);
    expect(() => randomPerturbation([2, 2, 1], 'l1' as never, 1, 0)).toThrow(/randomPerturbation: norm l1/);
    expect(() => randomPerturbation([2, 2, 1], 'inf', -2, 0)).toThrow(/randomPerturbation: radius -2/);
    expect(() => randomPerturbation([2, 0, 1], 'inf', 2, 0)).toThrow(/randomPerturbation: shape \[2,0,1\]/);
    // A radius of 0 is a ball too (the zero perturbation).
    expect(lpNorm(projectLp(v, 'inf', 0), 'inf')).toBe(0);
    v.dispose();
  });
});

describe('norms', () => {
  it('computes L2 and Linf of a whole tensor and per row', async () => {
    const v = tf.tensor2d([
      [3, -4],
      [1, -7],
    ]);
    expect(lpNorm(v, 'inf')).toBe(7);
    expect(lpNorm(v, 2)).toBeCloseTo(Math.sqrt(9 + 16 + 1 + 49), 5);
    expect(Array.from(batchNorm(v, 2).dataSync())).toEqual([5, expect.closeTo(Math.sqrt(50), 5)]);
    expect(Array.from(batchNorm(v, 'inf').dataSync())).toEqual([4, 7]);
  });
  it('parses norm names', async () => {
    expect(parseNorm('2')).toBe(2);
    expect(parseNorm('Linf')).toBe('inf');
    expect(parseNorm('3')).toBeUndefined();
  });
});

describe('seeded random numbers', () => {
  it('same seed, same sequence; different seed, different sequence', async () => {
    const a = new Rng(42),
      b = new Rng(42),
      c = new Rng(43);
    const sa = Array.from({ length: 10 }, () => a.next());
    expect(Array.from({ length: 10 }, () => b.next())).toEqual(sa);
    expect(Array.from({ length: 10 }, () => c.next())).not.toEqual(sa);
  });
  it('permutation is a permutation', async () => {
    const p = new Rng(1).permutation(100);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });
  it('pass seeds differ between passes and runs', async () => {
    expect(passSeed(0, 0)).not.toBe(passSeed(0, 1));
    expect(passSeed(0, 1)).not.toBe(passSeed(1, 1));
  });
  it('random perturbations have exactly the requested norm', async () => {
    expect(lpNorm(randomPerturbation([8, 8, 3], 'inf', 10, 1), 'inf')).toBe(10);
    expect(lpNorm(randomPerturbation([8, 8, 3], 2, 50, 1), 2)).toBeCloseTo(50, 3);
    const a = randomPerturbation([4, 4, 3], 2, 5, 7).dataSync();
    expect(Array.from(randomPerturbation([4, 4, 3], 2, 5, 7).dataSync())).toEqual(Array.from(a));
  });
});

describe('takeRows', () => {
  it('equals tf.gather along the first axis, repeats and int32 included', () => {
    const x = tf.randomUniform([6, 3, 4, 2], -5, 5, 'float32', 2);
    const idx = [5, 0, 0, 3];
    expect(Array.from(takeRows(x, idx).dataSync())).toEqual(Array.from(tf.gather(x, idx).dataSync()));
    expect(takeRows(x, idx).shape).toEqual([4, 3, 4, 2]);
    const y = tf.tensor2d(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      [3, 2],
      'int32',
    );
    const picked = takeRows(y, [2, 1]);
    expect(picked.dtype).toBe('int32');
    expect(picked.arraySync()).toEqual([
      [5, 6],
      [3, 4],
    ]);
    expect(takeRows(y, []).shape).toEqual([0, 2]);
  });
});

describe('Wilson intervals', () => {
  it('match the closed form at 50% of 100, and stay inside [0, 1] at 0% and 100%', () => {
    const [lo, hi] = wilsonInterval(0.5, 100);
    expect(lo).toBeCloseTo(0.4038, 4);
    expect(hi).toBeCloseTo(0.5962, 4);
    const [z0, z1] = wilsonInterval(0, 10);
    expect(z0).toBe(0);
    expect(z1).toBeCloseTo(0.2775, 4);
    const [o0, o1] = wilsonInterval(1, 10);
    expect(o0).toBeCloseTo(0.7225, 4);
    expect(o1).toBe(1);
    expect(wilsonInterval(0.3, 0)).toEqual([0, 1]);
  });
  it('narrow with n: about +-6 points at 256, +-0.4 at 50,000', () => {
    const width = (n: number) => wilsonInterval(0.5, n).reduce((a, b) => b - a);
    expect(width(256) / 2).toBeCloseTo(0.061, 2);
    expect(width(50_000) / 2).toBeCloseTo(0.0044, 3);
  });
  it('two rates differ only when their intervals are disjoint', () => {
    expect(ratesDiffer(0.9, 200, 0.6, 500)).toBe(true);
    expect(ratesDiffer(0.66, 200, 0.62, 500)).toBe(false);
  });
});
