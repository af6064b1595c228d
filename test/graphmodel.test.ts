import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import { loadClassifier } from '../src/import/load.js';
import { deepfool } from '../src/attacks/deepfool.js';
import { tfjsBackend } from '../src/engine/backend.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';

beforeAll(async () => {
  tf.enableProdMode();
  await tf.setBackend('cpu');
});

const dim = (ns: number[]) => ({ dim: ns.map((n) => ({ size: String(n) })) });
const f32 = { type: 'DT_FLOAT' };

/**
 * Writes a TF.js GraphModel by hand: logits = reshape(x, [-1, 12]) W + b, with input preprocessing
 * x/255 declared in the card. Linear, so DeepFool's answer is known in closed form.
 */
function writeGraphModel(dir: string, W: number[][], b: number[]): void {
  const nodes = [
    { name: 'x', op: 'Placeholder', attr: { dtype: f32, shape: { shape: dim([-1, 2, 2, 3]) } } },
    { name: 'W', op: 'Const', attr: { dtype: f32, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim([12, 2]) } } } },
    { name: 'b', op: 'Const', attr: { dtype: f32, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim([2]) } } } },
    { name: 'shape', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: dim([2]) } } } },
    { name: 'flat', op: 'Reshape', input: ['x', 'shape'], attr: { T: f32, Tshape: { type: 'DT_INT32' } } },
    { name: 'mm', op: 'MatMul', input: ['flat', 'W'], attr: { T: f32, transpose_a: { b: false }, transpose_b: { b: false } } },
    { name: 'logits', op: 'BiasAdd', input: ['mm', 'b'], attr: { T: f32, data_format: { s: Buffer.from('NHWC').toString('base64') } } },
  ];
  const model = {
    format: 'graph-model',
    modelTopology: { node: nodes, library: {}, versions: { producer: 1 } },
    weightsManifest: [
      {
        paths: ['w.bin'],
        weights: [
          { name: 'W', shape: [12, 2], dtype: 'float32' },
          { name: 'b', shape: [2], dtype: 'float32' },
          { name: 'shape', shape: [2], dtype: 'int32' },
        ],
      },
    ],
  };
  writeFileSync(join(dir, 'model.json'), JSON.stringify(model));
  const Wt = W[0].map((_, i) => W.map((row) => row[i])); // [12, 2]
  const buf = Buffer.concat([Buffer.from(new Float32Array([...Wt.flat(), ...b]).buffer), Buffer.from(new Int32Array([-1, 12]).buffer)]);
  writeFileSync(join(dir, 'w.bin'), buf);
  writeFileSync(
    join(dir, 'card.json'),
    JSON.stringify({
      name: 'hand-graph',
      format: 'graph',
      model: 'model.json',
      inputShape: [2, 2, 3],
      preprocess: { scale: 1 / 255 },
      numClasses: 2,
      logitsLayer: 'logits',
      labels: ['zero', 'one'],
    }),
  );
}

describe('GraphModel loading', () => {
  it('runs a converted-format graph with the card preprocessing, and DeepFool gets its closed form', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uap-graph-'));
    const w1 = Array.from({ length: 12 }, (_, i) => (i % 3) - 1 + 0.25); // class-1 weights
    writeGraphModel(dir, [new Array(12).fill(0), w1], [0.5, 0]);
    const model = await loadClassifier(dir, { backend: tfjsBackend() });
    expect(model.labels).toEqual(['zero', 'one']);
    const x = tf.fill([1, 2, 2, 3], 100) as tf.Tensor4D;
    const logits = model.logits(x).dataSync();
    const dot = w1.reduce((a, w) => a + w * (100 / 255), 0);
    expect(logits[1]).toBeCloseTo(dot, 4);
    expect(logits[0]).toBeCloseTo(0.5, 5);
    // In pixel space g = f1 - f0 = (w1/255) . x - 0.5 > 0 (class 1 wins): DeepFool steps along -w1 by |g| / ||w1/255||.
    const res = await deepfool(model, batchOfTensor(x), { candidates: 2, overshoot: 0 });
    const f = dot - 0.5;
    expect(f).toBeGreaterThan(0);
    const n = Math.hypot(...w1) / 255;
    const r = res.r;
    w1.forEach((wi, i) => expect(r[i]).toBeCloseTo(((Math.abs(f) / n + 1e-4) * (-wi / 255)) / n, 3));
    expect(res.status[0]).toBe('converged');
  });
});
