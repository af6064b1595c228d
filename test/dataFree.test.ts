import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { initBackend } from '../src/engine/backend.js';
import {
  computeDataFreeUniversal,
  DATA_FREE_DEFAULTS,
  logNormCotangent,
  neutralImage,
  type DataFreeOptions,
} from '../src/attacks/dataFree.js';
import { convLayers, featureModel, featureNet } from '../src/classifier/features.js';
import { forwardLogits, vjp } from '../src/classifier/compute.js';
import { loadClassifier } from '../src/import/load.js';
import { loadSet } from '../src/data/sets.js';
import { randomBaseline } from '../src/evaluation/noiseScore.js';
import { predictSet, foolingRate } from '../src/evaluation/scoring.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { loadOrt, onnxRuntime } from '../src/engine/onnx/runtime.js';
import { weights, type Net } from '../src/engine/net.js';
import { lpNorm } from '../src/math/lp.js';
import { Rng } from '../src/math/random.js';
import { assetsDir } from '../src/paths.js';
import type { Classifier } from '../src/classifier/classifier.js';
import { randomImages } from './helpers.js';
import { folderCheckpoints } from '../src/io/checkpoint.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';

const backend = await initBackend();

const shape: [number, number, number] = [6, 6, 3];

/** conv -> batch-norm -> relu -> conv (relu fused) -> dense: two convolution layers, one with unfused followers. */
function smallNet(): Net {
  const rng = new Rng(5);
  const w = (n: number, s: number) =>
    weights(
      Array.from({ length: n }, () => rng.normal() * s),
      [],
    );
  const k1 = { ...w(3 * 3 * 3 * 4, 0.02), shape: [3, 3, 3, 4] };
  const k2 = { ...w(3 * 3 * 4 * 5, 0.3), shape: [3, 3, 4, 5] };
  return {
    input: 'x',
    output: 'logits',
    nodes: [
      { name: 'c1', inputs: ['x'], op: { kind: 'conv', kernel: k1, strides: [1, 1], padding: 'same', group: 1, act: 'linear' } },
      {
        name: 'bn1',
        inputs: ['c1'],
        op: { kind: 'affine', scale: weights([1, 0.5, 2, 1], [4]), shift: weights([0.1, -0.2, 0, 0.3], [4]) },
      },
      { name: 'r1', inputs: ['bn1'], op: { kind: 'act', act: 'relu' } },
      { name: 'c2', inputs: ['r1'], op: { kind: 'conv', kernel: k2, strides: [2, 2], padding: 'valid', group: 1, act: 'relu' } },
      { name: 'flat', inputs: ['c2'], op: { kind: 'reshape', shape: [-1] } },
      { name: 'logits', inputs: ['flat'], op: { kind: 'dense', kernel: { ...w(20 * 3, 0.5), shape: [20, 3] }, act: 'linear' } },
    ],
  };
}

describe('GD-UAP objective', () => {
  it('the cotangent of sum_l log ||f_l|| is f_l / ||f_l||^2 / n: it matches central differences of the objective', () => {
    const rng = new Rng(3);
    const sizes = [4, 3];
    const values = Float32Array.from({ length: 2 * 7 }, () => rng.normal());
    const { dy, objective } = logNormCotangent(values, sizes, 2);
    const f = (v: Float32Array) => logNormCotangent(v, sizes, 2).objective;
    expect(objective).toBeCloseTo(f(values), 12);
    for (let t = 0; t < values.length; t++) {
      const h = 1e-3;
      const up = Float32Array.from(values);
      const down = Float32Array.from(values);
      up[t] += h;
      down[t] -= h;
      expect(dy[t]).toBeCloseTo((f(up) - f(down)) / (2 * h), 3);
    }
  });

  it('an all-zero layer adds nothing and gets no gradient', () => {
    const { dy, objective } = logNormCotangent(new Float32Array([0, 0, 3, 4]), [2, 2], 1);
    expect(Array.from(dy.subarray(0, 2))).toEqual([0, 0]);
    expect(objective).toBeCloseTo(Math.log(5), 6);
  });
});

describe('inner layers as an output', () => {
  const net = smallNet();

  it('the default layers are every convolution, after the element-wise nodes that follow it alone', () => {
    expect(convLayers(net)).toEqual(['r1', 'c2']);
  });

  it("the feature model gives each layer's values flattened and joined, and its vjp is the gradient of their weighted sum", async () => {
    const fm = await featureModel(net, shape, undefined);
    expect(fm.layers).toEqual([
      { name: 'r1', size: 6 * 6 * 4 },
      { name: 'c2', size: 2 * 2 * 5 },
    ]);
    const x = tf.tidy(() => tf.randomUniform([2, ...shape], 0, 255, 'float32', 9) as tf.Tensor4D);
    const values = await forwardLogits(fm, batchOfTensor(x));
    for (const [name, at] of [
      ['r1', 0],
      ['c2', 144],
    ] as const) {
      const g = netToTfGraph({ ...net, output: name }, shape);
      const want = tf.tidy(() => runPlainGraph(g, x).reshape([2, -1]).arraySync() as number[][]);
      tf.dispose(g.owned);
      const size = want[0].length;
      for (let i = 0; i < 2; i++) for (let t = 0; t < size; t++) expect(values[i * 164 + at + t]).toBeCloseTo(want[i][t], 3);
    }
    const dy = Float32Array.from({ length: 2 * 164 }, (_, t) => Math.sin(t));
    const { dx } = await vjp(fm, batchOfTensor(x), dy);
    const ref = tf.tidy(() =>
      tf
        .grad((t: tf.Tensor) => tf.sum(tf.mul(fm.logits(t as tf.Tensor4D), tf.tensor2d(dy, [2, 164]))))(x)
        .dataSync(),
    );
    dx.forEach((d, t) => expect(d).toBeCloseTo(ref[t], 3));
    x.dispose();
    fm.dispose();
  });

  it.skipIf(!existsSync('node_modules/onnxruntime-node'))(
    'on ONNX Runtime, the exported feature graph and its backward graph give the TF.js values and gradients',
    async () => {
      if (!(await loadOrt())) return;
      const [ort, ref] = [
        await featureModel(net, shape, undefined, (cut) => onnxRuntime(cut, shape, { only: ['forward', 'vjp'] })),
        await featureModel(net, shape, undefined),
      ];
      expect(ort.runtime?.name).toBe('onnxruntime');
      const x = tf.tidy(() => tf.randomUniform([3, ...shape], 0, 255, 'float32', 4) as tf.Tensor4D);
      const dy = Float32Array.from({ length: 3 * 164 }, (_, t) => Math.cos(t));
      const [a, b] = [await vjp(ort, batchOfTensor(x), dy), await vjp(ref, batchOfTensor(x), dy)];
      a.logits.forEach((v, t) => expect(v).toBeCloseTo(b.logits[t], 2));
      a.dx.forEach((v, t) => expect(v).toBeCloseTo(b.dx[t], 3));
      x.dispose();
      ort.dispose();
      ref.dispose();
    },
  );

  it('an unknown layer is refused by name', () => {
    expect(() => featureNet(net, ['nope'])).toThrow(/layers: no layer named nope/);
  });
});

describe('GD-UAP on the embedded Fashion-MNIST model', () => {
  let model: Classifier;
  beforeAll(async () => {
    model = await loadClassifier('fashion', { backend });
  });
  afterAll(() => model?.dispose());
  const X = randomImages(24, [28, 28, 1], 11);
  const opts = (o: Partial<DataFreeOptions>): DataFreeOptions => ({
    ...DATA_FREE_DEFAULTS,
    norm: 'inf',
    xi: 25,
    stepsPerPass: 6,
    maxPasses: 2,
    delta: 0,
    ...o,
  });

  it('the zero-input image of its preprocessing is black (pixels / 255)', () => {
    expect(Math.max(...neutralImage(model))).toBe(0);
  });

  it.each([
    ['inf', 25, 'adam'],
    [2, 400, 'sign'],
    ['inf', 25, 'sign'],
  ] as const)('norm %s xi %s (%s): ||v|| never exceeds xi', async (norm, xi, optimizer) => {
    const norms: number[] = [];
    const res = await computeDataFreeUniversal(model, X, opts({ norm, xi, optimizer, prior: 'range' }), {
      onPass: (r) => {
        norms.push(norm === 2 ? r.normL2 : r.normInf);
      },
    });
    expect(res.method).toBe('gduap');
    expect(norms.length).toBe(2);
    for (const n of norms) expect(n).toBeLessThanOrEqual(xi * (1 + 1e-5));
    expect(lpNorm(res.v, norm)).toBeGreaterThan(0);
  });

  it('data-free: with no prior or the range prior, the images of X do not change v (they are only scored)', async () => {
    for (const prior of ['none', 'range'] as const) {
      const a = await computeDataFreeUniversal(model, X, opts({ prior }));
      const b = await computeDataFreeUniversal(model, randomImages(24, [28, 28, 1], 99), opts({ prior }));
      expect(Array.from(b.v.dataSync())).toEqual(Array.from(a.v.dataSync()));
    }
    const c = await computeDataFreeUniversal(model, X, opts({ prior: 'data' }));
    const d = await computeDataFreeUniversal(model, randomImages(24, [28, 28, 1], 99), opts({ prior: 'data' }));
    expect(Array.from(d.v.dataSync())).not.toEqual(Array.from(c.v.dataSync()));
  });

  it('same seed, same v; a resumed run (Adam state included) ends where an unbroken one does', async () => {
    const o = opts({ prior: 'range', maxPasses: 3 });
    const a = await computeDataFreeUniversal(model, X, o);
    const dir = mkdtempSync(join(tmpdir(), 'uap-gduap-'));
    await computeDataFreeUniversal(model, X, { ...o, maxPasses: 1 }, { checkpoints: folderCheckpoints(dir) });
    const resumed = await computeDataFreeUniversal(model, X, o, { checkpoints: folderCheckpoints(dir), resume: true });
    expect(Array.from(resumed.v.dataSync())).toEqual(Array.from(a.v.dataSync()));
    await expect(
      computeDataFreeUniversal(model, X, { ...o, prior: 'none' }, { checkpoints: folderCheckpoints(dir), resume: true }),
    ).rejects.toThrow(/prior=/);
  });

  it('refuses a target and bad settings by field', async () => {
    await expect(computeDataFreeUniversal(model, X, opts({ target: 1 }))).rejects.toThrow(/target: GD-UAP is untargeted/);
    await expect(computeDataFreeUniversal(model, X, opts({ stepsPerPass: 0 }))).rejects.toThrow(/stepsPerPass: expected an integer/);
    await expect(computeDataFreeUniversal(model, X, opts({ layers: ['nope'] }))).rejects.toThrow(/no layer named nope/);
  });
});

const assets = assetsDir();
const present = existsSync(join(assets, 'models', 'mobilenet_v1_0.25_224'));

describe.skipIf(!present)('GD-UAP without data on ImageNet MobileNet v1 0.25 (shared assets)', () => {
  it('beats random noise of the same Linf norm on validation images it never saw', async () => {
    const model = await loadClassifier('mobilenet_v1_0.25_224', { backend, assets });
    try {
      const V = await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: 64, assets, what: 'val' });
      const res = await computeDataFreeUniversal(model, V, {
        ...DATA_FREE_DEFAULTS,
        norm: 'inf',
        xi: 10,
        prior: 'none',
        stepsPerPass: 24,
        maxPasses: 1,
        delta: 0,
      });
      const clean = await predictSet(model, V, null);
      const universal = foolingRate(clean, await predictSet(model, V, res.v));
      const noise = await randomBaseline(model, V, 'inf', 10, 2, clean);
      expect(universal).toBeGreaterThan(noise.mean + 0.15);
    } finally {
      model.dispose();
    }
  }, 300_000);
});
