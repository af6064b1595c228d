import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import './helpers.js';
import { initBackend } from '../src/engine/backend.js';
import * as fb from '../src/import/tflite/schema.generated.js';
import { buildTflite, type OpSpec, type TensorSpec } from './tfliteBuilder.js';

type Builder = Parameters<NonNullable<OpSpec['options']>>[0];
import { parseTflite, dequantize, tfliteToNet, cardFromTflite, readTflite } from '../src/import/tflite/index.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { findCard, loadClassifier } from '../src/import/load.js';
import { readCard } from '../src/classifier/card.js';
import type { Classifier } from '../src/classifier/classifier.js';
import { loadSet } from '../src/data/sets.js';
import { evaluatePerturbation } from '../src/evaluation/scoring.js';
import { assetsDir, CARDS_DIR } from '../src/paths.js';
import { Rng } from '../src/math/random.js';
import { vjp } from '../src/classifier/compute.js';
import { UsageError } from '../src/errors.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';

const backend = await initBackend();

const CONV_2D = 3,
  MEAN = 40,
  FULLY_CONNECTED = 9,
  SOFTMAX = 25,
  HARD_SWISH = 117;

/**
 * input uint8 [1,2,2,1] (scale 0.5, zero point 10) -> 1x1 CONV_2D, int8 weights per output channel
 * (w = [1, -1]), int32 bias [1, 2], fused RELU -> MEAN over H,W -> FULLY_CONNECTED, uint8 weights
 * (scale 0.5, zero point 128: W = [[1,-1],[0,2],[-4,0]]) -> SOFTMAX.
 */
function tinyQuantisedModel(extraOp?: number): Uint8Array {
  const tensors: TensorSpec[] = [
    { shape: [1, 2, 2, 1], type: 'uint8', quant: { scale: [0.5], zeroPoint: [10] }, name: 'input' },
    { shape: [2, 1, 1, 1], type: 'int8', data: [10, -5], quant: { scale: [0.1, 0.2], zeroPoint: [0, 0], axis: 0 } },
    { shape: [2], type: 'int32', data: [100, 200], quant: { scale: [0.01, 0.01], zeroPoint: [0, 0] } },
    { shape: [1, 2, 2, 2], type: 'int8', quant: { scale: [0.05], zeroPoint: [0] } },
    { shape: [2], type: 'int32', data: [1, 2] },
    { shape: [1, 2], type: 'int8', quant: { scale: [0.05], zeroPoint: [0] } },
    { shape: [3, 2], type: 'uint8', data: [130, 126, 128, 132, 120, 128], quant: { scale: [0.5], zeroPoint: [128] } },
    { shape: [1, 3], type: 'int8', quant: { scale: [0.1], zeroPoint: [0] }, name: 'logits' },
    { shape: [1, 3], type: 'uint8', quant: { scale: [1 / 256], zeroPoint: [0] }, name: 'probs' },
  ];
  const ops = [
    {
      code: CONV_2D,
      inputs: [0, 1, 2],
      outputs: [3],
      options: (b: Builder) =>
        [fb.BuiltinOptions.Conv2DOptions, fb.Conv2DOptions.createConv2DOptions(b, 1, 1, 1, 1, 1, 1)] as [fb.BuiltinOptions, number],
    },
    {
      code: MEAN,
      inputs: [3, 4],
      outputs: [5],
      options: (b: Builder) =>
        [fb.BuiltinOptions.ReducerOptions, fb.ReducerOptions.createReducerOptions(b, false)] as [fb.BuiltinOptions, number],
    },
    { code: FULLY_CONNECTED, inputs: [5, 6, -1], outputs: [7] },
    {
      code: SOFTMAX,
      inputs: [7],
      outputs: [8],
      options: (b: Builder) =>
        [fb.BuiltinOptions.SoftmaxOptions, fb.SoftmaxOptions.createSoftmaxOptions(b, 1)] as [fb.BuiltinOptions, number],
    },
  ];
  if (extraOp !== undefined) ops.splice(1, 0, { code: extraOp, inputs: [3], outputs: [3] } as never);
  return buildTflite({ tensors, ops, inputs: [0], outputs: [8] });
}

/** The tiny model's logits by hand. */
function expectedLogits(pixels: number[]): number[] {
  const a = pixels.map((p) => 0.5 * (p - 10));
  const m0 = a.reduce((s, v) => s + Math.max(0, v + 1), 0) / 4;
  const m1 = a.reduce((s, v) => s + Math.max(0, -v + 2), 0) / 4;
  return [m0 - m1, 2 * m1, -4 * m0];
}

function tmpFile(name: string, bytes: Uint8Array): string {
  const f = join(mkdtempSync(join(tmpdir(), 'uap-tfl-')), name);
  writeFileSync(f, bytes);
  return f;
}

describe('TFLite parsing and dequantisation', () => {
  it('reads tensors, quantisation and operators from the flatbuffer', async () => {
    const m = parseTflite(tinyQuantisedModel(), 'tiny.tflite');
    expect(m.ops.map((o) => o.name)).toEqual(['CONV_2D', 'MEAN', 'FULLY_CONNECTED', 'SOFTMAX']);
    expect(m.inputs).toEqual([0]);
    expect(m.outputs).toEqual([8]);
    expect(m.tensors[0]).toMatchObject({ name: 'input', shape: [1, 2, 2, 1], type: 'uint8', quant: { scale: [0.5], zeroPoint: [10] } });
    expect(m.tensors[1].quant).toEqual({ scale: [expect.closeTo(0.1, 7), expect.closeTo(0.2, 7)], zeroPoint: [0, 0], axis: 0 });
    expect(m.ops[2].inputs).toEqual([5, 6, -1]);
  });

  it('dequantises uint8 per tensor, int8 per channel and int32 biases as scale * (q - zero point)', async () => {
    const m = parseTflite(tinyQuantisedModel(), 'tiny.tflite');
    expect(Array.from(dequantize(m.tensors[1]))).toEqual([expect.closeTo(1, 6), expect.closeTo(-1, 6)]);
    expect(Array.from(dequantize(m.tensors[2]))).toEqual([expect.closeTo(1, 6), expect.closeTo(2, 6)]);
    expect(Array.from(dequantize(m.tensors[6]))).toEqual([1, -1, 0, 2, -4, 0]);
    // Per-channel along the LAST axis (depthwise filters [1, kh, kw, C]): channel = index % C.
    const depthwise = {
      index: 0,
      name: 'dw',
      shape: [1, 1, 2, 3],
      type: 'int8',
      data: new Uint8Array(new Int8Array([1, 1, 1, -2, -2, -2]).buffer),
      quant: { scale: [1, 10, 100], zeroPoint: [0, 1, 0], axis: 3 },
    };
    expect(Array.from(dequantize(depthwise))).toEqual([1, 0, 100, -2, -30, -200]);
  });

  it('takes preprocessing, input size and class count from the file', async () => {
    const m = parseTflite(tinyQuantisedModel(), 'tiny.tflite');
    expect(cardFromTflite('tiny.tflite', m)).toMatchObject({
      format: 'tflite',
      inputShape: [2, 2, 1],
      numClasses: 3,
      preprocess: { scale: 0.5, offset: -5 },
    });
  });

  it('builds the float network: logits (the input of SOFTMAX) match the closed form', async () => {
    const m = parseTflite(tinyQuantisedModel(), 'tiny.tflite');
    const g = netToTfGraph(tfliteToNet(m, 'tiny.tflite'), [2, 2, 1]);
    expect(g.output).toBe('7');
    const px = [
      [0, 10, 14, 255],
      [3, 200, 12, 9],
    ];
    const x = tf.tensor4d(px.flat(), [2, 2, 2, 1]).mul(0.5).sub(5);
    const y = runPlainGraph(g, x).arraySync() as number[][];
    px.forEach((p, i) => expectedLogits(p).forEach((v, j) => expect(y[i][j]).toBeCloseTo(v, 4)));
    tf.dispose([x, ...g.owned]);
  });

  it('names an unsupported operator, and refuses files that are not TFLite', async () => {
    expect(() => tfliteToNet(parseTflite(tinyQuantisedModel(HARD_SWISH), 'hs.tflite'), 'hs.tflite')).toThrow(
      /operator 1 \(HARD_SWISH\) is not supported by the TFLite importer/,
    );
    expect(() => parseTflite(new TextEncoder().encode('{"modelTopology": {}}'), 'x.tflite')).toThrow(/x.tflite: not a TFLite model/);
    const cut = tinyQuantisedModel().slice(0, 200);
    expect(() => tfliteToNet(parseTflite(cut, 'cut.tflite'), 'cut.tflite')).toThrow(UsageError);
  });
});

describe('a .tflite file as a classifier', () => {
  let model: Classifier;
  let file: string;
  beforeAll(async () => {
    file = tmpFile('tiny.tflite', tinyQuantisedModel());
    model = await loadClassifier(file, { backend });
  });
  afterAll(() => model?.dispose());

  it('loads from the path alone with the preprocessing the file states', async () => {
    expect(model.inputShape).toEqual([2, 2, 1]);
    expect(model.numClasses).toBe(3);
    const px = [7, 30, 11, 100];
    const y = tf.tidy(() => model.logits(tf.tensor4d(px, [1, 2, 2, 1])).arraySync()[0]);
    expectedLogits(px).forEach((v, j) => expect(y[j]).toBeCloseTo(v, 4));
  });

  it('has input gradients that match central finite differences', async () => {
    // Pixels away from the ReLU kinks (a = 0.5 (p - 10) not near -1 or 2) so differences are exact.
    const px = [20, 40, 0, 60];
    const f = (x: tf.Tensor) => tf.sum(tf.mul(model.logits(x as tf.Tensor4D), tf.tensor1d([1, -2, 0.5])));
    const g = tf.tidy(() =>
      tf
        .grad(f)(tf.tensor4d(px, [1, 2, 2, 1]))
        .dataSync(),
    );
    const h = 0.5;
    px.forEach((_, i) => {
      const at = (d: number) =>
        tf.tidy(
          () =>
            f(
              tf.tensor4d(
                px.map((p, k) => (k === i ? p + d : p)),
                [1, 2, 2, 1],
              ),
            ).dataSync()[0],
        );
      expect(g[i]).toBeCloseTo((at(h) - at(-h)) / (2 * h), 4);
    });
  });

  it('asks for preprocessing flags when the input is float (the file cannot say)', async () => {
    const bytes = buildTflite({
      tensors: [
        { shape: [1, 2, 2, 1], type: 'float32', name: 'in' },
        { shape: [2], type: 'int32', data: [1, 4] },
        { shape: [1, 4], type: 'float32', name: 'out' },
      ],
      ops: [{ code: 22, inputs: [0, 1], outputs: [2] }],
      inputs: [0],
      outputs: [2],
    });
    const f = tmpFile('float.tflite', bytes);
    expect(() => findCard(f)).toThrow(/float.tflite: the model takes float input.*pass scale\/offset or mean\/std/);
    expect(findCard(f, { preprocess: { scale: 2 } })).toMatchObject({ inputShape: [2, 2, 1], numClasses: 4, preprocess: { scale: 2 } });
  });
});

const assets = assetsDir();
const CORAL = join(assets, 'models', 'coral_tflite');
const present = existsSync(join(CORAL, 'mobilenet_v1_0.25_128_quant.tflite'));
if (!present) console.warn(`SKIPPED TFLite asset tests: ${CORAL} not found (set UAP_ASSETS)`);

describe.skipIf(!present)('the coral TFLite MobileNets (shared assets)', () => {
  const names = [
    'mobilenet_v2_1.0_224_quant',
    'tf2_mobilenet_v2_1.0_224_ptq',
    'mobilenet_v1_0.75_192_quant',
    'mobilenet_v1_0.5_160_quant',
    'mobilenet_v1_0.25_128_quant',
  ];

  it('all five parse and compile, and each bundled card matches what its file states', async () => {
    for (const name of names) {
      const card = readCard(join(CARDS_DIR, `${name}.json`));
      const file = join(CORAL, `${name}.tflite`);
      const m = readTflite(file);
      const own = cardFromTflite(file, m);
      expect(own.inputShape).toEqual(card.inputShape);
      expect(own.numClasses).toBe(card.numClasses + 1); // background class
      expect(own.preprocess!.scale).toBeCloseTo(card.preprocess.scale!, 9);
      expect(own.preprocess!.offset).toBeCloseTo(card.preprocess.offset!, 9);
      expect(tfliteToNet(m, file).nodes.length).toBeGreaterThan(25);
      // A path to the file finds its bundled card (background offset, labels).
      expect(findCard(file, {}, assets).name).toBe(name);
    }
  });

  describe('MobileNet v1 0.25 128 (uint8)', () => {
    let model: Classifier;
    beforeAll(async () => {
      model = await loadClassifier('mobilenet_v1_0.25_128_quant', { backend, assets });
    });
    afterAll(() => model?.dispose());

    it('classifies 100 validation images about as well as its reference (53.9% on 1300)', async () => {
      const V = await loadSet(model, join(assets, 'data', 'ilsvrc2012_val_1300'), { limit: 100, assets, what: 'val' });
      const ev = await evaluatePerturbation(model, V, tf.zeros(model.inputShape) as tf.Tensor3D);
      expect(ev.cleanAccuracy).toBeGreaterThan(0.42);
      expect(ev.cleanAccuracy).toBeLessThan(0.66);
    });

    it('has input gradients (TF.js engine and ONNX Runtime) that agree with central finite differences', async () => {
      expect(model.runsOn).toBe('onnxruntime');
      const rng = new Rng(3);
      const [h, w, c] = model.inputShape;
      const x0 = tf.tensor4d(
        Float32Array.from({ length: h * w * c }, () => 40 + rng.int(170)),
        [1, h, w, c],
      );
      // f = logit 1 - logit 0, as DeepFool differentiates it.
      const dy = new Float32Array(model.numClasses);
      dy[1] = 1;
      dy[0] = -1;
      const f = (x: tf.Tensor) =>
        tf.tidy(() => {
          const y = model.logits(x as tf.Tensor4D);
          return tf.sub(y.slice([0, 1], [1, 1]), y.slice([0, 0], [1, 1])).sum();
        });
      const viaTfjs = tf.tidy(() => tf.grad(f)(x0));
      const viaOnnx = tf.tensor4d((await vjp(model, batchOfTensor(x0), dy)).dx, x0.shape);
      for (const g of [viaTfjs, viaOnnx])
        for (let k = 0; k < 3; k++) {
          const d = tf.tidy(() => {
            const r = tf.randomNormal([1, h, w, c], 0, 1, 'float32', 10 + k);
            return r.div(r.norm());
          });
          const step = 0.5;
          const fd = tf.tidy(
            () => (f(x0.add(d.mul(step)) as tf.Tensor4D).dataSync()[0] - f(x0.sub(d.mul(step)) as tf.Tensor4D).dataSync()[0]) / (2 * step),
          );
          const an = tf.tidy(() => tf.sum(tf.mul(g, d)).dataSync()[0]);
          expect(Math.abs(fd - an)).toBeLessThan(0.02 * Math.abs(an) + 1e-4);
          d.dispose();
        }
      tf.dispose([x0, viaTfjs, viaOnnx]);
    });
  });
});
