import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import { inputGradConv, relu6InputGrad } from '../src/engine/tfjs/inputgrad.js';
import { layersToNet } from '../src/import/layersGraph.js';
import { netToPassingTfGraph, netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';

const compileLayersModel = (m: tf.LayersModel, out?: string) => netToTfGraph(layersToNet(m, out), m.inputs[0].shape.slice(1) as number[]);
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { candidateGradients, candidateGradientsLoop } from '../src/classifier/gradients.js';
import { onTfjs } from './helpers.js';
import { maxRelativeDifference } from '../src/engine/selfcheck.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { transposeArray, weights, type Net } from '../src/engine/net.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

describe('input gradients from forward kernels', () => {
  const cases: [string, number, number, number, 'same' | 'valid'][] = [];
  for (const size of [7, 8])
    for (const k of [1, 3])
      for (const s of [1, 2]) for (const p of ['same', 'valid'] as const) cases.push([`${size}px k${k} s${s} ${p}`, size, k, s, p]);
  it.each(cases)('conv2d and depthwise match TF.js gradients: %s', async (_n, size, k, s, padding) => {
    const x = tf.randomNormal([2, size, size, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const wConv = tf.randomNormal([k, k, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const wDw = tf.randomNormal([k, k, 3, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const probeConv = tf.randomNormal(tf.conv2d(x, wConv, s, padding).shape, 0, 1, 'float32', 4);
    const probeDw = tf.randomNormal(tf.depthwiseConv2d(x, wDw, s, padding).shape, 0, 1, 'float32', 5);
    const conv = inputGradConv('conv', wConv, [s, s], padding);
    const dw = inputGradConv('depthwise', wDw, [s, s], padding);
    const ours = tf.grad((t) => tf.sum(tf.mul(conv.apply(t as tf.Tensor4D), probeConv)))(x);
    const ref = tf.grad((t) => tf.sum(tf.mul(tf.conv2d(t as tf.Tensor4D, wConv, s, padding), probeConv)))(x);
    expect(maxRelativeDifference(ours.dataSync(), ref.dataSync())).toBeLessThan(1e-5);
    const oursDw = tf.grad((t) => tf.sum(tf.mul(dw.apply(t as tf.Tensor4D), probeDw)))(x);
    const refDw = tf.grad((t) => tf.sum(tf.mul(tf.depthwiseConv2d(t as tf.Tensor4D, wDw, s, padding), probeDw)))(x);
    expect(maxRelativeDifference(oursDw.dataSync(), refDw.dataSync())).toBeLessThan(1e-5);
    // forward values are the plain ops'
    expect(maxRelativeDifference(conv.apply(x).dataSync(), tf.conv2d(x, wConv, s, padding).dataSync())).toBe(0);
  });
  it('relu6 gradient is 1 inside (0, 6) and 0 outside', async () => {
    const x = tf.tensor1d([-1, 0.5, 3, 5.9, 7]);
    expect(
      Array.from(
        tf
          .grad((t) => tf.sum(relu6InputGrad(t)))(x)
          .dataSync(),
      ),
    ).toEqual([0, 1, 1, 1, 0]);
    expect(Array.from(relu6InputGrad(x).dataSync())).toEqual([0, 0.5, 3, expect.closeTo(5.9, 5), 6]);
  });
});

/** A small Keras-style model with every layer kind MobileNet and DarkNet use. */
function smallModel(): tf.LayersModel {
  const input = tf.input({ shape: [12, 12, 3] });
  let y = tf.layers
    .conv2d({
      filters: 6,
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      useBias: false,
      name: 'c1',
      kernelInitializer: tf.initializers.glorotNormal({ seed: 1 }),
    })
    .apply(input) as tf.SymbolicTensor;
  y = tf.layers
    .batchNormalization({
      name: 'bn1',
      movingMeanInitializer: tf.initializers.randomNormal({ seed: 2 }),
      movingVarianceInitializer: tf.initializers.ones(),
      gammaInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed: 3 }),
    })
    .apply(y) as tf.SymbolicTensor;
  y = tf.layers.reLU({ maxValue: 6, name: 'r1' }).apply(y) as tf.SymbolicTensor;
  y = tf.layers
    .depthwiseConv2d({ kernelSize: 3, padding: 'same', name: 'dw', depthwiseInitializer: tf.initializers.glorotNormal({ seed: 4 }) })
    .apply(y) as tf.SymbolicTensor;
  y = tf.layers
    .batchNormalization({
      name: 'bn2',
      movingMeanInitializer: tf.initializers.randomNormal({ seed: 6 }),
      movingVarianceInitializer: tf.initializers.randomUniform({ minval: 0.5, maxval: 2, seed: 7 }),
      betaInitializer: tf.initializers.randomNormal({ seed: 8 }),
    })
    .apply(y) as tf.SymbolicTensor;
  y = tf.layers.leakyReLU({ alpha: 0.1, name: 'lr' }).apply(y) as tf.SymbolicTensor;
  y = tf.layers.maxPooling2d({ poolSize: 2, name: 'mp' }).apply(y) as tf.SymbolicTensor;
  y = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(y) as tf.SymbolicTensor;
  y = tf.layers
    .dense({ units: 5, name: 'logits', kernelInitializer: tf.initializers.glorotNormal({ seed: 5 }) })
    .apply(y) as tf.SymbolicTensor;
  const out = tf.layers.activation({ activation: 'softmax', name: 'probs' }).apply(y) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

describe('LayersModel -> plain-op graph', () => {
  it('gives the same logits as the LayersModel (batch-norm folded)', async () => {
    const model = smallModel();
    const g = compileLayersModel(model, 'logits');
    // Both batch-norms are folded: into the conv (bn1) and into the depthwise conv (bn2).
    const names = g.steps.map((s) => s.name);
    expect(names).toContain('bn1');
    expect(names).toContain('bn2');
    expect(names).not.toContain('c1');
    expect(names).not.toContain('dw');
    const x = tf.randomUniform([3, 12, 12, 3], -1, 1, 'float32', 7);
    const truncated = tf.model({ inputs: model.inputs, outputs: model.getLayer('logits').output as tf.SymbolicTensor });
    const ref = (truncated.predict(x) as tf.Tensor).dataSync();
    expect(maxRelativeDifference(runPlainGraph(g, x).dataSync(), ref)).toBeLessThan(1e-5);
  });
  it('refuses layer configurations it would translate wrongly, naming the layer; a dense layer on images acts on channels as Keras does', async () => {
    const input = tf.input({ shape: [4, 4, 3] });
    const bn = tf.layers.batchNormalization({ axis: 1, name: 'bn_axis1' }).apply(input) as tf.SymbolicTensor;
    expect(() => compileLayersModel(tf.model({ inputs: input, outputs: bn }))).toThrow(/layer bn_axis1: batch normalization over axis 1/);
    const dense = tf.layers.dense({ units: 2, name: 'dense4d' }).apply(input) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: dense });
    const g = compileLayersModel(model);
    const x = tf.randomUniform([2, 4, 4, 3], -1, 1, 'float32', 3);
    expect(maxRelativeDifference(runPlainGraph(g, x).dataSync(), (model.predict(x) as tf.Tensor).dataSync())).toBeLessThan(1e-5);
  });
  it("reads Keras's swish activation (x * sigmoid(x)) as silu: the LayersModel's logits", () => {
    const input = tf.input({ shape: [5, 5, 3] });
    const conv = tf.layers
      .conv2d({
        filters: 4,
        kernelSize: 3,
        activation: 'swish',
        name: 'c_swish',
        kernelInitializer: tf.initializers.glorotNormal({ seed: 9 }),
      })
      .apply(input) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: tf.layers.flatten().apply(conv) as tf.SymbolicTensor });
    const g = compileLayersModel(model);
    const x = tf.randomUniform([2, 5, 5, 3], -3, 3, 'float32', 11);
    expect(maxRelativeDifference(runPlainGraph(g, x).dataSync(), (model.predict(x) as tf.Tensor).dataSync())).toBeLessThan(1e-5);
  });
  it('frees activations after their last use outside a gradient tape: same logits, a fraction of the peak memory', async () => {
    const g = compileLayersModel(smallModel(), 'logits');
    const x = tf.randomUniform([8, 12, 12, 3], -1, 1, 'float32', 7);
    const base = tf.memory().numBytes;
    let freed: Float32Array | undefined;
    const peakFreed =
      (await tf.profile(() => void tf.tidy(() => void (freed = runPlainGraph(g, x).dataSync() as Float32Array)))).peakBytes - base;
    let kept: Float32Array | undefined;
    // Under a tape (as inside tf.grad) every activation must stay for the backward pass.
    const peakKept =
      (
        await tf.profile(
          () =>
            void tf.tidy(
              () =>
                void tf.grad((t) => {
                  const y = runPlainGraph(g, t);
                  kept = y.dataSync() as Float32Array;
                  return tf.sum(y);
                })(x),
            ),
        )
      ).peakBytes - base;
    expect(maxRelativeDifference(freed!, kept!)).toBeLessThan(1e-6);
    expect(peakFreed).toBeLessThan(0.6 * peakKept);
  });
  it('names the missing logits layer', async () => {
    expect(() => compileLayersModel(smallModel(), 'conv_preds')).toThrow(/logits layer "conv_preds" is not in the model/);
  });
});

describe('batched candidate gradients', () => {
  it('one tiled backward pass equals one backward pass per class', async () => {
    const model = smallModel();
    const g = compileLayersModel(model, 'logits');
    const clf = onTfjs({
      name: 's',
      inputShape: [12, 12, 3],
      numClasses: 5,
      labelSpace: 'own',
      logits: (x) => runPlainGraph(g, x) as tf.Tensor2D,
      dispose: () => {},
    });
    const x = tf.randomUniform([3, 12, 12, 3], 0, 1, 'float32', 8) as tf.Tensor4D;
    const cand = Int32Array.from([0, 1, 2, 3, 4, 0, 2, 4, 1, 3, 4, 3, 2, 1, 0]);
    const a = await candidateGradients(clf, batchOfTensor(x), cand, 5, { maxRows: 4 });
    const b = await candidateGradientsLoop(clf, batchOfTensor(x), cand, 5);
    expect(a.rows.length).toBe(3 * 5 * 12 * 12 * 3);
    expect(maxRelativeDifference(a.rows, b.rows)).toBeLessThan(1e-6);
    expect(maxRelativeDifference(a.logits, b.logits)).toBeLessThan(1e-6);
    // and the logits are the model's
    const l = clf.logits(x).dataSync();
    for (let n = 0; n < 3; n++) for (let j = 0; j < 5; j++) expect(a.logits[n * 5 + j]).toBeCloseTo(l[n * 5 + cand[n * 5 + j]], 5);
  });
  it("keeps each backward pass within the model's measured batch limit", async () => {
    const g = compileLayersModel(smallModel(), 'logits');
    let calls = 0;
    const rows: number[] = [];
    const clf = onTfjs({
      name: 's',
      inputShape: [12, 12, 3],
      numClasses: 5,
      labelSpace: 'own',
      maxBatch: { forward: 8, gradient: 3 },
      logits: (x) => {
        calls++;
        rows.push(x.shape[0]);
        return runPlainGraph(g, x) as tf.Tensor2D;
      },
      dispose: () => {},
    });
    const x = tf.randomUniform([2, 12, 12, 3], 0, 1, 'float32', 8) as tf.Tensor4D;
    const cand = Int32Array.from([0, 1, 2, 3, 4, 4, 3, 2, 1, 0]);
    const limited = await candidateGradients(clf, batchOfTensor(x), cand, 5);
    expect(calls).toBe(4);
    expect(Math.max(...rows)).toBe(3);
    const loop = await candidateGradientsLoop(clf, batchOfTensor(x), cand, 5);
    expect(maxRelativeDifference(limited.rows, loop.rows)).toBeLessThan(1e-6);
  });
  it('with a reference class, gives the gradients of the logit differences f_k - f_ref', async () => {
    const model = smallModel();
    const g = compileLayersModel(model, 'logits');
    const clf = onTfjs({
      name: 's',
      inputShape: [12, 12, 3],
      numClasses: 5,
      labelSpace: 'own',
      logits: (x) => runPlainGraph(g, x) as tf.Tensor2D,
      dispose: () => {},
    });
    const x = tf.randomUniform([2, 12, 12, 3], 0, 1, 'float32', 9) as tf.Tensor4D;
    const all = await candidateGradients(clf, batchOfTensor(x), Int32Array.from([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]), 5);
    const ref = Int32Array.from([2, 4]);
    const cand = Int32Array.from([0, 1, 3, 0, 1, 2]);
    const diff = await candidateGradients(clf, batchOfTensor(x), cand, 3, { reference: ref, maxRows: 4 });
    const loop = await candidateGradientsLoop(clf, batchOfTensor(x), cand, 3, ref);
    expect(maxRelativeDifference(diff.rows, loop.rows)).toBeLessThan(1e-6);
    const a = tf.tensor3d(all.rows, [2, 5, 12 * 12 * 3]).arraySync();
    const d = tf.tensor3d(diff.rows, [2, 3, 12 * 12 * 3]).arraySync();
    for (let n = 0; n < 2; n++)
      for (let j = 0; j < 3; j++) {
        const expected = a[n][cand[n * 3 + j]].map((v, i) => v - a[n][ref[n]][i]);
        expect(maxRelativeDifference(d[n][j], expected)).toBeLessThan(1e-5);
        expect(diff.logits[n * 3 + j]).toBeCloseTo(all.logits[n * 5 + cand[n * 3 + j]] - all.logits[n * 5 + ref[n]], 5);
      }
  });
});

describe('transposeArray', () => {
  /** Each output value read from its source index, one at a time: the definition. */
  const naive = (data: Float32Array, shape: number[], perm: number[]) => {
    const out = perm.map((p) => shape[p]);
    const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const moved = new Float32Array(data.length);
    const idx = new Array<number>(out.length).fill(0);
    for (let o = 0; o < moved.length; o++) {
      moved[o] = data[idx.reduce((s, v, a) => s + v * strides[perm[a]], 0)];
      for (let a = out.length - 1; a >= 0 && ++idx[a] === out[a]; a--) idx[a] = 0;
    }
    return moved;
  };
  it.each([
    [
      [70, 45],
      [1, 0],
    ],
    [
      [33, 3, 2, 2],
      [2, 3, 1, 0],
    ],
    [
      [4, 40, 3, 35],
      [0, 3, 2, 1],
    ],
    [
      [3, 4, 5],
      [0, 2, 1],
    ],
    [
      [3, 4, 5],
      [1, 0, 2],
    ],
    [
      [3, 4, 5],
      [0, 1, 2],
    ],
    [[65], [0]],
    [
      [40, 33, 1, 1],
      [2, 3, 1, 0],
    ],
    [
      [1, 4, 1, 6],
      [3, 0, 2, 1],
    ],
    [
      [2, 3, 4, 5],
      [0, 1, 3, 2],
    ],
    [
      [6, 35, 3, 3],
      [2, 3, 1, 0],
    ],
    [
      [1, 1],
      [1, 0],
    ],
  ])('%j by %j equals the definition', (shape, perm) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => i + 0.5);
    const got = transposeArray(data, shape, perm);
    expect(got.shape).toEqual(perm.map((p) => shape[p]));
    expect(Array.from(got.data)).toEqual(Array.from(naive(data, shape, perm)));
  });
});

describe('a passing graph (each node its weights only while it runs)', () => {
  const w = (shape: number[], seed: number) =>
    weights(
      Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37 + seed) * 0.3),
      shape,
    );
  const net: Net = {
    input: 'x',
    output: 'fc',
    nodes: [
      { name: 'flat', inputs: ['x'], op: { kind: 'reshape', shape: [-1] } },
      { name: 'h', inputs: ['flat'], op: { kind: 'dense', kernel: w([48, 300], 1), bias: w([300], 2), act: 'relu' } },
      { name: 'fc', inputs: ['h'], op: { kind: 'dense', kernel: w([300, 23], 3), bias: w([23], 4), act: 'softmax' } },
    ],
  };
  it("gives the whole graph's values, dense kernels in blocks of columns or whole, and frees every weight", async () => {
    const x = tf.randomUniform([2, 4, 4, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const whole = netToTfGraph(net, [4, 4, 3]);
    const want = tf.tidy(() => runPlainGraph(whole, x));
    tf.dispose(whole.owned);
    const kernelBytes = 4 * (48 * 300 + 300 * 23);
    for (const blockBytes of [4 * 48 * 7, 4 * 300 * 5, 1, 2 ** 20]) {
      const [before, baseBytes] = [tf.memory().numTensors, tf.memory().numBytes];
      let got: tf.Tensor | undefined;
      const { peakBytes } = await tf.profile(
        () => (got = tf.tidy(() => runPlainGraph(netToPassingTfGraph(net, [4, 4, 3], blockBytes), x))),
      );
      expect(maxRelativeDifference(got!.dataSync(), want.dataSync())).toBeLessThan(1e-6);
      got!.dispose();
      expect(tf.memory().numTensors).toBe(before);
      // Never every kernel at once; in small blocks, a fraction of the largest.
      expect(peakBytes - baseBytes).toBeLessThan(blockBytes < 2 ** 10 ? kernelBytes / 4 : kernelBytes);
    }
    tf.dispose([x, want]);
  });
});
