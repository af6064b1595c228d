import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import {
  batchGradient,
  computeSgdUniversal,
  lossCotangent,
  SGD_DEFAULTS,
  shardGradient,
  validateSgdOptions,
  type SgdOptions,
} from '../src/attacks/sgd.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS } from '../src/attacks/universal.js';
import { targetSuccessRate } from '../src/attacks/passes.js';
import { classDiscriminative } from '../src/attacks/criterion.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { batchOf } from '../src/math/batch.js';
import { lpNorm } from '../src/math/lp.js';
import { predictSet } from '../src/evaluation/scoring.js';
import { randomPerturbation } from '../src/math/noise.js';
import { foolingRate } from '../src/evaluation/scoring.js';
import { UsageError } from '../src/errors.js';
import { tinyNet, randomImages, linearClassifier } from './helpers.js';
import { folderCheckpoints } from '../src/io/checkpoint.js';
import { passesToReach, reachableShare } from '../src/attacks/stepSchedule.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const shape: [number, number, number] = [6, 6, 3];
const opts = (o: Partial<SgdOptions>): SgdOptions => ({ ...SGD_DEFAULTS, norm: 'inf', xi: 12, batchSize: 8, delta: 0, maxPasses: 4, ...o });

describe('SGD-UAP losses', () => {
  const logits = Float32Array.from([2, 0.5, -1, 0.1, 3, 1]); // two images, three classes
  const labels = Int32Array.from([0, 1]);
  const ce = (z: number[], y: number) => Math.log(z.reduce((s, v) => s + Math.exp(v), 0)) - z[y];

  it('clamped cross-entropy: the cotangent is (softmax - onehot(label)) / n, and zero once CE >= beta', () => {
    const { dy, loss } = lossCotangent(logits, labels, 3, { loss: 'ce', beta: 12, kappa: 0 });
    // Finite differences of mean CE with respect to each logit.
    const l = Array.from(logits);
    for (let t = 0; t < 6; t++) {
      const up = l.slice();
      up[t] += 1e-3;
      const dn = l.slice();
      dn[t] -= 1e-3;
      const mean = (z: number[]) => (ce(z.slice(0, 3), 0) + ce(z.slice(3), 1)) / 2;
      expect(dy[t]).toBeCloseTo((mean(up) - mean(dn)) / 2e-3, 4);
    }
    expect(loss).toBeCloseTo((ce(l.slice(0, 3), 0) + ce(l.slice(3), 1)) / 2, 5);
    // With label 0, image 1's CE (about 3.07) is above beta = 2: it stops pulling, and counts as beta.
    const clamped = lossCotangent(logits, Int32Array.from([0, 0]), 3, { loss: 'ce', beta: 2, kappa: 0 });
    expect(Array.from(clamped.dy.slice(3))).toEqual([0, 0, 0]);
    expect(clamped.dy[0]).not.toBe(0);
    expect(clamped.loss).toBeCloseTo((ce(l.slice(0, 3), 0) + 2) / 2, 5);
  });

  it('targeted cross-entropy descends on the target: the cotangent is -(softmax - onehot(target)) / n', () => {
    const { dy } = lossCotangent(logits, labels, 3, { loss: 'ce', beta: 12, kappa: 0, target: 2 });
    const z = [2, 0.5, -1];
    const sum = z.reduce((s, v) => s + Math.exp(v), 0);
    z.forEach((v, j) => expect(dy[j]).toBeCloseTo(-(Math.exp(v) / sum - (j === 2 ? 1 : 0)) / 2, 6));
  });

  it('margin: pushes the label down and the strongest other class up, until the margin reaches -kappa', () => {
    const { dy } = lossCotangent(logits, labels, 3, { loss: 'margin', beta: 12, kappa: 0 });
    expect(Array.from(dy.slice(0, 3))).toEqual([-0.5, 0.5, 0]); // image 0: label 0, runner-up 1
    // Image 1 (label 1, logit 3) is 2 above class 2: active. With kappa 0 and a fooled image it would be 0.
    expect(Array.from(dy.slice(3))).toEqual([0, -0.5, 0.5]);
    const fooled = lossCotangent(Float32Array.from([0, 5, 1]), Int32Array.from([0]), 3, { loss: 'margin', beta: 12, kappa: 2 });
    expect(Array.from(fooled.dy)).toEqual([0, 0, 0]); // margin -5 < -kappa: done
  });
});

describe('class-discriminative SGD-UAP (CD-UAP)', () => {
  it('the criterion: fooling rate on the attacked classes, and the share of the others that kept their label', () => {
    const c = classDiscriminative([1, 2]);
    const clean = Int32Array.from([1, 1, 2, 0, 0, 3]);
    const adv = Int32Array.from([0, 1, 3, 0, 2, 3]);
    expect(c.successRate(clean, adv)).toBeCloseTo(2 / 3, 12);
    expect(c.keptRate(clean, adv)).toBeCloseTo(2 / 3, 12);
    expect([c.done(0, 1), c.done(1, 1), c.done(0, 0), c.done(1, 0)]).toEqual([true, false, true, false]);
  });

  it('an image of a class not attacked gets the cotangent that lowers its cross-entropy: -(softmax - onehot(label)) / n', () => {
    const logits = Float32Array.from([2, 0.5, -1, 0.1, 3, 1]);
    const { dy } = lossCotangent(logits, Int32Array.from([0, 1]), 3, { loss: 'ce', beta: 12, kappa: 0, classes: [1] });
    const z = [2, 0.5, -1];
    const sum = z.reduce((a, v) => a + Math.exp(v), 0);
    z.forEach((v, j) => expect(dy[j]).toBeCloseTo(-(Math.exp(v) / sum - (j === 0 ? 1 : 0)) / 2, 6));
    // Image 1 is of the attacked class 1: the untargeted cotangent, +(softmax - onehot) / n.
    const z1 = [0.1, 3, 1];
    const s1 = z1.reduce((a, v) => a + Math.exp(v), 0);
    z1.forEach((v, j) => expect(dy[3 + j]).toBeCloseTo((Math.exp(v) / s1 - (j === 1 ? 1 : 0)) / 2, 6));
  });

  it('fools the attacked classes and keeps more of the others than an untargeted v does; refused beside a target or with other methods', async () => {
    const model = tinyNet(shape, 6);
    const X = randomImages(48, shape);
    const clean = await predictSet(model, X, null);
    const attacked = [clean[0]];
    const o = opts({ maxPasses: 6, xi: 16 });
    const cd = await computeSgdUniversal(model, X, { ...o, classes: attacked });
    const plain = await computeSgdUniversal(model, X, o);
    const c = classDiscriminative(attacked);
    const [cdAdv, plainAdv] = [await predictSet(model, X, cd.v), await predictSet(model, X, plain.v)];
    expect(c.successRate(clean, cdAdv)).toBeGreaterThan(0.5);
    expect(cd.history.at(-1)!.attackedFoolingRate).toBeCloseTo(c.successRate(clean, cdAdv), 12);
    expect(c.keptRate(clean, cdAdv)).toBeGreaterThan(c.keptRate(clean, plainAdv) + 0.1);
    await expect(computeSgdUniversal(model, X, { ...o, classes: attacked, target: 1 })).rejects.toThrow(
      /classes: a class-discriminative attack is untargeted/,
    );
    await expect(computeSgdUniversal(model, X, { ...o, classes: [9] })).rejects.toThrow(/classes: expected class indices in 0\.\.5/);
    await expect(computeAlgorithm1(model, X, { ...ALGORITHM1_DEFAULTS, norm: 'inf', xi: 12, classes: attacked })).rejects.toThrow(
      /classes: class-discriminative attacks need the sgd method/,
    );
  });
});

describe('targeted success rate', () => {
  it('counts images sent to the target among those not already of it', () => {
    const clean = Int32Array.from([0, 1, 2, 2, 1]);
    const adv = Int32Array.from([2, 2, 2, 1, 1]);
    expect(targetSuccessRate(clean, adv, 2)).toBeCloseTo(2 / 3, 9);
  });
});

describe('targeted DeepFool on a linear classifier (closed form)', () => {
  it('one L2 step r = (|f|/||w||_2 + 1e-4)(1 + overshoot) w/||w||_2, f = f_t - f_k, w = w_t - w_k, reaches the target', async () => {
    const s: [number, number, number] = [1, 1, 2];
    const W = [
      [1, 0],
      [0, 1],
      [-1, -1],
    ];
    const m = linearClassifier(W, [0, 0, 0], s);
    const x0 = [2, 1]; // f = [2, 1, -3]: class 0; target 2
    const res = await deepfool(m, batchOf(Float32Array.from(x0), s), { target: 2, candidates: 3, overshoot: 0.02 });
    expect(res.status[0]).toBe('converged');
    expect(res.toLabel[0]).toBe(2);
    // First step from class 0 towards 2: w = w_2 - w_0 = (-2, -1), f = -5.
    // x + r = (2 - 2.04, 1 - 1.02) = (-0.04, -0.02): f = (-0.04, -0.02, 0.06), class 2 in one step.
    expect(res.steps[0]).toBe(1);
    const r = res.r;
    const w = [-2, -1];
    const nrm = Math.sqrt(5);
    const scale = ((5 / nrm + 1e-4) / nrm) * 1.02;
    expect(r[0]).toBeCloseTo(w[0] * scale, 5);
    expect(r[1]).toBeCloseTo(w[1] * scale, 5);
  });
  it('an image already of the target is left alone', async () => {
    const m = linearClassifier(
      [
        [1, 0],
        [0, 1],
      ],
      [0, 0],
      [1, 1, 2],
    );
    const res = await deepfool(m, batchOf(Float32Array.from([0, 3]), [1, 1, 2]), { target: 1, candidates: 2 });
    expect(res.status[0]).toBe('already');
    expect(Array.from(res.r)).toEqual([0, 0]);
  });
});

describe('SGD-UAP', () => {
  const model = tinyNet(shape, 6);
  const X = randomImages(32, shape);

  it.each([
    ['inf', 12, 'sign'],
    [2, 300, 'sign'],
    ['inf', 12, 'adam'],
  ] as const)('norm %s xi %s (%s): ||v|| never exceeds xi, and it fools far more than random noise', async (p, xi, optimizer) => {
    const norms: number[] = [];
    const res = await computeSgdUniversal(model, X, opts({ norm: p, xi, optimizer }), {
      onPass: (r) => {
        norms.push(p === 2 ? r.normL2 : r.normInf);
      },
    });
    for (const n of norms) expect(n).toBeLessThanOrEqual(xi * (1 + 1e-5));
    const noise = randomPerturbation(shape, p, xi, 7);
    const clean = await predictSet(model, X, null);
    const randomRate = foolingRate(clean, await predictSet(model, X, noise));
    expect(res.method).toBe('sgd');
    expect(res.foolingRate).toBeGreaterThan(Math.max(0.3, 2 * randomRate));
  });

  it('same seed, same v; a resumed run (Adam state included) ends where an unbroken one does', async () => {
    const o = opts({ optimizer: 'adam', maxPasses: 3 });
    const a = await computeSgdUniversal(model, X, o);
    const b = await computeSgdUniversal(model, X, o);
    expect(Array.from(b.v.dataSync())).toEqual(Array.from(a.v.dataSync()));
    const dir = mkdtempSync(join(tmpdir(), 'uap-sgd-'));
    await computeSgdUniversal(model, X, { ...o, maxPasses: 1 }, { checkpoints: folderCheckpoints(dir) });
    const resumed = await computeSgdUniversal(model, X, o, { checkpoints: folderCheckpoints(dir), resume: true });
    expect(Array.from(resumed.v.dataSync())).toEqual(Array.from(a.v.dataSync()));
    await expect(computeSgdUniversal(model, X, { ...o, lr: 3 }, { checkpoints: folderCheckpoints(dir), resume: true })).rejects.toThrow(
      /lr=/,
    );
  });

  it('targeted: raises the share of images sent to the target (both methods)', async () => {
    const clean = await predictSet(model, X, null);
    const target = 2; // a class some images have (the random net never gives class 0: unreachable)
    expect(clean.filter((c) => c === target).length).toBeLessThan(X.size / 4);
    const sgd = await computeSgdUniversal(model, X, opts({ target, xi: 40, maxPasses: 5 }));
    const a1 = await computeAlgorithm1(model, X, {
      ...ALGORITHM1_DEFAULTS,
      norm: 'inf',
      xi: 40,
      batchSize: 8,
      candidates: 4,
      delta: 0,
      maxPasses: 3,
      target,
    });
    for (const r of [sgd, a1]) {
      expect(r.targetSuccess).toBeGreaterThan(0.3);
      expect(r.history.every((h) => h.targetSuccess !== undefined)).toBe(true);
    }
  });

  it("a small X (one step a pass): 5 passes can cover 41% of xi; the studio's default passes let v reach the ball", async () => {
    expect(reachableShare(5, 1)).toBeCloseTo(1 - 0.9 ** 5, 12);
    expect(passesToReach(0.9, 1)).toBe(22); // 1 - 0.9^22 = 0.902
    expect(passesToReach(0.9, 7)).toBe(2); // 0.7, then 1.33
    expect(passesToReach(1.5, 1)).toBeUndefined(); // one step a pass never covers more than xi
    const small = X.subset(Array.from({ length: 16 }, (_, i) => i));
    const run = async (maxPasses: number) =>
      lpNorm((await computeSgdUniversal(model, small, { ...SGD_DEFAULTS, norm: 'inf', xi: 10, delta: 0, maxPasses })).v, 'inf');
    expect(await run(5)).toBeLessThanOrEqual(10 * reachableShare(5, 1) + 1e-4);
    expect(await run(passesToReach(0.9, 1)!)).toBeGreaterThan(10 * reachableShare(5, 1) + 1);
  });

  it('a deadline ends the run after the pass in which it passed (always one pass), with the reason', async () => {
    const o = opts({ maxPasses: 5 });
    const past = await computeSgdUniversal(model, X, o, { deadline: Date.now() - 1 });
    expect(past.passes).toBe(1);
    expect(past.converged).toBe(false);
    expect(past.stopReason).toMatch(/^time budget reached after 1 pass\(es\) at fooling rate \d+\.\d%$/);
    const one = await computeSgdUniversal(model, X, { ...o, maxPasses: 1 });
    expect(Array.from(past.v.dataSync())).toEqual(Array.from(one.v.dataSync()));
    const far = await computeSgdUniversal(model, X, o, { deadline: Date.now() + 3_600_000 });
    expect(far.passes).toBe(5);
  });

  it('refuses bad settings with the flag named', async () => {
    await expect(computeSgdUniversal(model, X, opts({ lrDecay: 0 }))).rejects.toThrow(/^lrDecay: expected a number in \(0, 1\]/);
    await expect(computeSgdUniversal(model, X, opts({ loss: 'hinge' as never }))).rejects.toThrow(UsageError);
    await expect(computeSgdUniversal(model, X, opts({ target: 99 }))).rejects.toThrow(/^target: expected a class index in 0..5/);
  });

  it('warm start: begins from the given perturbation (projected onto the ball)', async () => {
    const init = tf.fill(shape, 30) as tf.Tensor3D;
    const res = await computeSgdUniversal(model, X, opts({ maxPasses: 1, lr: 1e-6 }), { init });
    // One tiny step from the projected init (all 12): still about 12 everywhere.
    expect(lpNorm(res.v, 'inf')).toBeCloseTo(12, 3);
    expect(tf.min(res.v).dataSync()[0]).toBeGreaterThan(11.9);
  });
});

describe('batchGradient', () => {
  it("sums the images' gradients where x + v lies inside [0, 255] (the clip passes it), nowhere else", () => {
    const raw = Float32Array.from([-1, 0, 128, 255, 256, 10, /* image 2 */ 5, -0.5, 300, 255, 3, 4]);
    const dx = Float32Array.from([1, 2, 3, 4, 5, 6, /* image 2 */ 10, 20, 30, 40, 50, 60]);
    expect(Array.from(batchGradient(dx, raw, 6))).toEqual([0 + 10, 2 + 0, 3 + 0, 4 + 40, 0 + 50, 6 + 60]);
  });
});

describe('SGD-UAP gradient shards (the unit of its data-parallel run)', () => {
  it('shards computed elsewhere, in any order, and handed back in order give the local sharded run bit for bit; shards change the sums, not the algorithm', async () => {
    const model = tinyNet(shape, 4);
    const X = randomImages(24, shape);
    const o = opts({ gradShard: 3, maxPasses: 2 });
    const local = await computeSgdUniversal(model, X, o);
    let calls = 0;
    // As a coordinator would: the shards at v, computed last first (as workers may finish), returned in order.
    const remote = await computeSgdUniversal(model, X, o, {
      shardGradients: async (v, shards, n) => {
        calls++;
        const out = [];
        for (const s of [...shards].reverse()) out.unshift(await shardGradient(model, X.images(s.idx), v, s.labels, n, o));
        return out;
      },
    });
    expect(calls).toBe(2 * 3); // 24 images in minibatches of 8, two passes
    expect(Array.from(remote.v.dataSync())).toEqual(Array.from(local.v.dataSync()));
    // One shard per minibatch (the default) is the unsharded run; the sharded one differs only by float sums.
    const whole = await computeSgdUniversal(model, X, opts({ maxPasses: 2 }));
    const a = whole.v.dataSync() as Float32Array;
    const b = local.v.dataSync() as Float32Array;
    expect(a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0)).toBeLessThanOrEqual(2 * 12);
    expect(() => validateSgdOptions(opts({ gradShard: 0 }))).toThrow(/^gradShard: expected an integer in \[1, 4096\], got 0$/);
    tf.dispose([local.v, remote.v, whole.v]);
  });
});
