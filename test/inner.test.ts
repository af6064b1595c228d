import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import { innerAttack, crossEntropyCotangent } from '../src/attacks/inner.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS, type Algorithm1Options } from '../src/attacks/universal.js';
import { lpNorm } from '../src/math/lp.js';
import { METHODS, METHOD_NAMES, methodOf } from '../src/attacks/methods.js';
import { UNTARGETED, targetedAt, criterionOf } from '../src/attacks/criterion.js';
import { linearClassifier, tinyNet, randomImages, uapCli } from './helpers.js';
import { batchOf } from '../src/math/batch.js';
import { tensorOfBatch } from '../src/engine/tfjs/batchTensor.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const shape: [number, number, number] = [1, 2, 2];
// Three classes on 4 pixels; mid-range pixels so that small steps never meet the [0, 255] clip.
const W = [
  [1, -2, 0.5, 0],
  [0, 1, 1, -1],
  [-1, 0, 2, 1],
];
const b = [0.3, -0.2, 0.1];
const x0 = [100, 120, 90, 110];

/** softmax(Wx + b) - onehot(y) pulled back through W: the cross-entropy gradient of a linear model. */
function ceGradient(x: number[], y: number): number[] {
  const z = W.map((row, i) => row.reduce((s, wij, j) => s + wij * x[j], b[i]));
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const p = e.map((v) => v / e.reduce((s, t) => s + t, 0));
  return x.map((_, j) => W.reduce((s, row, i) => s + row[j] * (p[i] - (i === y ? 1 : 0)), 0));
}

describe('inner attacks of Algorithm 1 (closed forms on a linear classifier)', () => {
  it('the cotangent is softmax - onehot (ascent), its negative towards a target, and sums to zero per row', () => {
    const logits = Float32Array.from([2, 0, -1, 0.5, 0.5, 3]);
    const dy = crossEntropyCotangent(logits, 3, Int32Array.from([0, 2]));
    const e = [Math.exp(2), 1, Math.exp(-1)];
    expect(dy[0]).toBeCloseTo(e[0] / (e[0] + e[1] + e[2]) - 1, 6);
    expect(dy[0] + dy[1] + dy[2]).toBeCloseTo(0, 6);
    const towards = crossEntropyCotangent(logits, 3, Int32Array.from([0, 2]), 1);
    expect(towards[1]).toBeCloseTo(-(1 / (e[0] + e[1] + e[2]) - 1), 6);
  });

  it('FGSM, Linf: r = eps sign(grad of the cross-entropy); L2: r = eps grad / ||grad||', async () => {
    const m = linearClassifier(W, b, shape);
    const x = batchOf(Float32Array.from(x0), shape);
    const label = Int32Array.from([0]);
    const g = ceGradient(x0, 0);
    const inf = await innerAttack(m, x, { kind: 'fgsm', norm: 'inf', eps: 3, labels: label });
    expect(Array.from(inf.r)).toEqual(g.map((t) => 3 * Math.sign(t)));
    const l2 = await innerAttack(m, x, { kind: 'fgsm', norm: 2, eps: 3, labels: label });
    const n = Math.hypot(...g);
    Array.from(l2.r).forEach((ri, j) => expect(ri).toBeCloseTo((3 * g[j]) / n, 4));
  });

  it('PGD stays in the eps ball and the pixel range, fools when eps allows, and leaves an already fooled image alone', async () => {
    const net = tinyNet([4, 4, 3], 5, 7);
    const X = randomImages(6, [4, 4, 3], 9);
    const x = X.images([0, 1, 2, 3, 4, 5]);
    const clean = Int32Array.from((await net.logits(tensorOfBatch(x)).argMax(1).data()) as Int32Array);
    for (const norm of ['inf', 2] as const) {
      const eps = norm === 'inf' ? 40 : 400;
      const res = await innerAttack(net, x, { kind: 'pgd', norm, eps, steps: 8, labels: clean });
      const px = x.data;
      for (let i = 0; i < 6; i++) {
        const ri = res.r.subarray(i * 48, (i + 1) * 48);
        expect(lpNorm(tf.tensor3d(ri, [4, 4, 3]), norm)).toBeLessThanOrEqual(eps * (1 + 1e-5));
        ri.forEach((t, j) => expect(px[i * 48 + j] + t).toBeGreaterThanOrEqual(-1e-3));
        ri.forEach((t, j) => expect(px[i * 48 + j] + t).toBeLessThanOrEqual(255 + 1e-3));
      }
    }
    // Labels the model does not give count as fooled from the start: PGD does not move those images.
    const wrong = Int32Array.from(clean, (c) => (c + 1) % 5);
    const res = await innerAttack(net, x, { kind: 'pgd', norm: 'inf', eps: 40, steps: 4, labels: wrong });
    expect(res.fooled.every(Boolean)).toBe(true);
    expect(res.r.every((t) => t === 0)).toBe(true);
  });

  it("NewtonFool and C&W-L2 cross the boundary of a linear classifier near its closest point (DeepFool's closed form)", async () => {
    // Two classes, f1 - f0 = w . x + c: the closest crossing is |f| / ||w||_2 away along w.
    const w = [0.02, -0.01, 0.015, 0.005];
    const m = linearClassifier([[0, 0, 0, 0], w], [0, -3], shape);
    const x = batchOf(Float32Array.from(x0), shape);
    const f = w.reduce((s2, wi, j) => s2 + wi * x0[j], 0) - 3;
    expect(f).toBeLessThan(0); // class 0
    const minimal = Math.abs(f) / Math.hypot(...w);
    const nf = await innerAttack(m, x, { kind: 'newtonfool', norm: 2, eps: 1, labels: Int32Array.from([0]) });
    expect(nf.fooled[0]).toBe(true);
    expect(Math.hypot(...nf.r)).toBeLessThan(1.6 * minimal);
    const cw = await innerAttack(m, x, { kind: 'cw', norm: 2, eps: 1, steps: 60, labels: Int32Array.from([0]) });
    expect(cw.fooled[0]).toBe(true);
    expect(Math.hypot(...cw.r)).toBeGreaterThanOrEqual(minimal * 0.999);
    expect(Math.hypot(...cw.r)).toBeLessThan(1.3 * minimal);
    // Targeted C&W reaches the target; NewtonFool is untargeted only and says so.
    const t = await innerAttack(linearClassifier(W, b, shape), x, {
      kind: 'cw',
      norm: 2,
      eps: 1,
      steps: 30,
      labels: Int32Array.from([0]),
      target: 2,
    });
    expect(t.fooled[0]).toBe(true);
    await expect(innerAttack(m, x, { kind: 'newtonfool', norm: 2, eps: 1, labels: Int32Array.from([0]), target: 1 })).rejects.toThrow(
      /newtonfool: untargeted only/,
    );
  });

  it('Algorithm 1 with PGD or FGSM inside: v in the ball, same seed same v, more fooling than nothing', async () => {
    const net = tinyNet([4, 4, 3], 5, 7);
    const X = randomImages(40, [4, 4, 3], 11);
    const o = { ...ALGORITHM1_DEFAULTS, xi: 30, maxPasses: 2, inner: 'pgd', innerSteps: 4 } as Algorithm1Options;
    const a = await computeAlgorithm1(net, X, o);
    const again = await computeAlgorithm1(net, X, o);
    expect(lpNorm(a.v, 'inf')).toBeLessThanOrEqual(30 + 1e-4);
    expect(Array.from(a.v.dataSync())).toEqual(Array.from(again.v.dataSync()));
    expect(a.foolingRate).toBeGreaterThan(0);
    const f = await computeAlgorithm1(net, X, { ...o, inner: 'fgsm', norm: 2, xi: 200 });
    expect(lpNorm(f.v, 2)).toBeLessThanOrEqual(200 * (1 + 1e-5));
  });

  it('the CLI runs --inner pgd on the embedded model and names bad inner flags', async () => {
    const ok = await uapCli([
      'compute',
      '--inner',
      'pgd',
      '--inner-steps',
      '3',
      '--xi',
      '30',
      '--max-passes',
      '1',
      '--limit',
      '50',
      '--val-limit',
      '50',
      '-o',
      `/tmp/uap-inner-${process.pid}`,
    ]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/fooling rate on validation \(50 images\)/);
    const bad = await uapCli(['compute', '--inner', 'bim', '-o', `/tmp/uap-inner-bad-${process.pid}`]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--inner/);
    const steps = await uapCli(['compute', '--inner', 'pgd', '--inner-steps', '0', '-o', `/tmp/uap-inner-bad-${process.pid}`]);
    expect(steps.status).toBe(2);
    expect(steps.stderr).toMatch(/--inner-steps 0/);
  });
});

describe('the registry of crafting methods', () => {
  it('knows every method by name, fills its defaults, crafts through one call, and names the choices for an unknown one', async () => {
    expect(METHOD_NAMES).toEqual(['algorithm1', 'sgd', 'gduap']);
    const net = tinyNet([4, 4, 3], 5, 7);
    const X = randomImages(24, [4, 4, 3], 11);
    // GD-UAP reads inner layers, which a bare logits function has none of (dataFree.test.ts crafts with it).
    await expect(methodOf('gduap').craft(net, X, methodOf('gduap').options({ xi: 25 }))).rejects.toThrow(/inner layers cannot be read/);
    for (const name of ['algorithm1', 'sgd'] as const) {
      const m = methodOf(name);
      expect(m).toBe(METHODS[name]);
      const o = m.options({ xi: 25, maxPasses: 1 });
      expect(o.xi).toBe(25);
      expect(o.norm).toBe('inf');
      expect(o.delta).toBeGreaterThan(0);
      const res = await m.craft(net, X, o);
      expect(res.method).toBe(name);
      expect(lpNorm(res.v, 'inf')).toBeLessThanOrEqual(25 + 1e-4);
    }
    expect(() => methodOf('fff')).toThrow(/method fff: expected one of algorithm1, sgd, gduap/);
    const help = await uapCli(['compute', '--help']);
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(/choices: "algorithm1", "sgd"/);
  });
});

describe('criteria: untargeted and targeted', () => {
  it('own "done", the driven class and its direction, and the success rate', () => {
    const clean = Int32Array.from([0, 1, 2, 2]);
    const adv = Int32Array.from([2, 1, 2, 0]);
    expect(criterionOf(undefined)).toBe(UNTARGETED);
    expect([UNTARGETED.done(2, 0), UNTARGETED.done(1, 1), UNTARGETED.classOf(3), UNTARGETED.sign]).toEqual([true, false, 3, 1]);
    expect(UNTARGETED.successRate(clean, adv)).toBe(0.5);
    const t = targetedAt(2);
    expect([t.done(2, 0), t.done(1, 0), t.classOf(0), t.sign, t.target]).toEqual([true, false, 2, -1, 2]);
    // Of the two images not already of class 2, one is sent there.
    expect(t.successRate(clean, adv)).toBe(0.5);
    expect(t.rateName).toBe('targeted success rate');
  });
});
