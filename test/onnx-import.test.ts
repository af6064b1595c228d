import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../src/tf.js';
import onnxProto from 'onnx-proto';
import './helpers.js';
import { initBackend, tfjsBackend } from '../src/engine/backend.js';
import { loadClassifier, onnxOn, probeImage } from '../src/import/load.js';
import { FileRunner, fileReference, referenceDifference } from '../src/import/onnx/reference.js';
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { argmaxRows, forwardLogits, vjp } from '../src/classifier/compute.js';
import { maxRelativeDifference } from '../src/engine/selfcheck.js';
import { OnnxGraph } from '../src/engine/onnx/builder.js';
import { parseOnnx } from '../src/import/onnx/parse.js';
import { onnxNet } from '../src/import/onnx/convert.js';
import { loadOrt } from '../src/engine/onnx/runtime.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { FIXTURE_DIR, fixtureCard, fixtureNames, readFixture } from './onnxFixtures.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { BATCH } from '../src/import/onnx/fold.js';
import {
  canonicalPlan,
  describeDims,
  onnxDims,
  plainPlan,
  regroupPlan,
  targetDims as groupedTarget,
} from '../src/import/onnx/batchGroups.js';

const backend = await initBackend();

/**
 * ONNX import against PyTorch: every fixture of scripts/make-onnx-fixtures.py (small seeded models that
 * together use every supported operator, opsets 11, 13, 17, 18) must give PyTorch's logits and
 * pixel-space input gradients on ONNX Runtime and on TF.js; bad files give one-line errors.
 */

const DIR = FIXTURE_DIR;
const CLI = join(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
const uap = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 240_000 });
const TORCHVISION = ['--mean', '123.675,116.28,103.53', '--std', '58.395,57.12,57.375'];

const fixtures = fixtureNames;
const read = readFixture;
const card = fixtureCard;
const ortPresent = (await loadOrt()) !== null;

describe('ONNX fixtures exported from PyTorch: logits and input gradients equal PyTorch autograd', () => {
  it('there is a fixture per family and opset', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(18);
    expect(fixtures.some((f) => f.endsWith('op18'))).toBe(true);
    // Vision transformers: timm's layout (ours, DeiT), torchvision's nn.MultiheadAttention, Hugging Face's,
    // torchvision's Swin and MaxViT (window and grid partitions, einsum attention).
    for (const family of ['vit', 'deit', 'tvvit', 'hfvit', 'tvswin', 'maxvit'])
      expect(fixtures.some((f) => f.startsWith(`${family}-`))).toBe(true);
  });
  for (const onnx of ortPresent ? [true, false] : [false])
    it.each(fixtures)(`%s on ${onnx ? 'ONNX Runtime' : 'TF.js'}`, async (name) => {
      const f = read(name);
      const model = await loadClassifier(card(name, f), { backend: onnx ? backend : tfjsBackend() });
      expect(model.runsOn).toBe(onnx ? 'onnxruntime' : `TF.js ${tf.getBackend()}`);
      const x = tf.tensor4d(Float32Array.from(f.pixels), [2, ...f.inputShape]);
      try {
        const logits = await forwardLogits(model, batchOfTensor(x));
        expect(maxRelativeDifference(logits, f.logits)).toBeLessThan(1e-4);
        expect(Array.from(argmaxRows(logits, f.numClasses))).toEqual(Array.from(argmaxRows(Float32Array.from(f.logits), f.numClasses)));
        const { dx } = await vjp(model, batchOfTensor(x), Float32Array.from(f.dy), 1);
        expect(maxRelativeDifference(dx, f.dx)).toBeLessThan(1e-4);
      } finally {
        x.dispose();
        model.dispose();
      }
    });
});

/** A one-node-chain ONNX model written with the project's own builder: NCHW [N, 3, 8, 8] in, [N, 4] out. */
function tinyModel(extra?: (g: OnnxGraph, x: string) => string, dims: (number | string)[] = ['N', 3, 8, 8]): Uint8Array {
  const g = new OnnxGraph();
  let x = g.op('Conv', ['input', g.floats(new Float32Array(4 * 3 * 3 * 3).fill(0.01), [4, 3, 3, 3])], {
    kernel_shape: [3, 3],
    pads: [1, 1, 1, 1],
  });
  if (extra) x = extra(g, x);
  g.opMulti('Flatten', [g.op('GlobalAveragePool', [x])], ['logits']);
  return g.encode([['input', dims]], [['logits', ['N', 4]]]);
}

describe('x * sigmoid(x) as PyTorch exports SiLU', () => {
  const net = (bytes: Uint8Array) => onnxNet(parseOnnx(bytes, 'silu.onnx'), 'silu.onnx', {});
  it("becomes the convolution's activation, in either operand order; not where the sigmoid is read elsewhere", () => {
    for (const first of [true, false]) {
      const fused = net(tinyModel((g, x) => g.op('Mul', first ? [x, g.op('Sigmoid', [x])] : [g.op('Sigmoid', [x]), x])));
      expect(fused.nodes.map((n) => `${n.op.kind}:${'act' in n.op ? JSON.stringify(n.op.act) : ''}`)).toEqual(
        expect.arrayContaining(['conv:"silu"']),
      );
      expect(fused.nodes.some((n) => n.op.kind === 'act' || n.op.kind === 'binary')).toBe(false);
    }
    // The sigmoid also feeds an Add: it stays, and so does the product.
    const kept = net(
      tinyModel((g, x) => {
        const s = g.op('Sigmoid', [x]);
        return g.op('Add', [g.op('Mul', [x, s]), s]);
      }),
    );
    expect(kept.nodes.filter((n) => n.op.kind === 'binary').length).toBe(2);
    expect(kept.nodes.some((n) => 'act' in n.op && n.op.act === 'silu')).toBe(false);
  });
});

describe('attention that moves or folds the batch axis (batchGroups.ts)', () => {
  // nn.MultiheadAttention's export: x [B, T, D] -> [T, B, D] -> [T, B * heads, d] -> [B * heads, T, d].
  const B = BATCH;
  it('a reshape deals the Net axes out in ONNX order, splitting an axis where a target dim takes its outer part', () => {
    // [T=17, B, D=16] held as Net [B, 17, 16] (groups [[1], [0], [2]]) to [17, B * 2, 8].
    const dims = groupedTarget([17, 2 * B, 8], [[1], [0], [2]], [17, 16], false)!;
    expect(dims).toEqual([
      { size: 17, batch: false },
      { size: 2, batch: true },
      { size: 8, batch: false },
    ]);
    const plan = regroupPlan([[1], [0], [2]], [17, 16], dims);
    // The Net value [B, 17, 16] becomes [B, 17, 2, 8]; ONNX axis 1 is the batch times the heads.
    expect(plan).toEqual({ order: null, shape: [17, 2, 8], groups: [[1], [0, 2], [3]] });
    // Back: [17, B * 2, 8] to [17 * B, 16] puts the batch inside the first axis, the heads with d.
    const back = regroupPlan([[1], [0, 2], [3]], [17, 2, 8], groupedTarget([17 * B, 16], [[1], [0, 2], [3]], [17, 2, 8], false)!);
    expect(back).toEqual({
      order: null,
      shape: null,
      groups: [
        [1, 0],
        [2, 3],
      ],
    });
    // -1 and 0 as exporters write them; a batch twice or not at all is no plan.
    expect(groupedTarget([0, -1, 8], [[1], [0], [2]], [17, 16], false)).toEqual(dims);
    expect(groupedTarget([17, 2, 8], [[1], [0], [2]], [17, 16], false)).toBeNull();
    expect(
      regroupPlan(
        [[1], [0], [2]],
        [17, 16],
        [
          { size: 17 * 16, batch: false },
          { size: 1, batch: true },
        ],
      ),
    ).toMatch(/batch/);
  });
  it('the canonical Net value puts the batch first and merges each ONNX axis into one Net axis', () => {
    // [B * 2, 17, 8] held as Net [B, 17, 2, 8]: transposed to [B, 2, 17, 8], the batch group keeps its heads apart.
    expect(canonicalPlan([[0, 2], [1], [3]], [17, 2, 8])).toEqual({ order: [0, 2, 1, 3], shape: null, groups: [[0, 1], [2], [3]] });
    // [17 * B, 16] held as Net [B, 17, 2, 8]: the heads and d merge into one axis for the dense layer.
    expect(
      canonicalPlan(
        [
          [1, 0],
          [2, 3],
        ],
        [17, 2, 8],
      ),
    ).toEqual({ order: null, shape: [17, 16], groups: [[1, 0], [2]] });
    // The batch alone in front: the plain value, nothing to do.
    expect(plainPlan([[0], [1], [2]], [17, 16])).toEqual({ order: null, shape: null, groups: [[0], [1], [2]] });
    expect(plainPlan([[1], [0], [2]], [17, 16])).toBeNull();
    expect(
      onnxDims(
        [
          [1, 0],
          [2, 3],
        ],
        [17, 2, 8],
      ),
    ).toEqual([17 * B, 16]);
    expect(describeDims([[1], [0, 2], [3]], [17, 2, 8])).toBe('[17, N*2, 8]');
  });
  it('a fixed batch of 1 that attention folds is refused, asking for a dynamic batch axis', async () => {
    const f = read('tvvit-op17');
    await expect(loadClassifier(card('tvvit-batch1', f, join(DIR, 'tvvit-batch1-op17.onnx')), { backend })).rejects.toThrow(
      /self_attention\/Reshape .*fixes the batch at 1.*export with a dynamic batch axis \(torch\.onnx\.export\(\.\.\., dynamic_axes=/,
    );
  });
});

describe('bad ONNX files and operators: one-line errors naming what is wrong', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'uap-onnx-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, bytes: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  /** Exit 2 and one error line naming the problem, no stack trace. */
  const expectUsage = (r: ReturnType<typeof uap>, pattern: RegExp) => {
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('uap: error') || l.startsWith('error:'));
    expect(r.status, r.stderr).toBe(2);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  it('an unsupported operator names the operator, the node and the opset', () => {
    const p = write(
      'd2s.onnx',
      tinyModel((g, x) => g.op('DepthToSpace', [x], { blocksize: 2 }, 'my_d2s')),
    );
    expectUsage(
      uap('accuracy', '-m', p, ...TORCHVISION, '--num-classes', '4'),
      /node my_d2s_\d+ \(DepthToSpace, opset 16\): this operator is not supported/,
    );
  });
  it('an Einsum other than a batched matrix product of two image values names its equation and what works', () => {
    const p = write(
      'einsum.onnx',
      tinyModel((g, x) => g.op('Einsum', [x], { equation: 'nchw->nchw' }, 'my_einsum')),
    );
    expectUsage(
      uap('accuracy', '-m', p, ...TORCHVISION, '--num-classes', '4'),
      /node my_einsum_\d+ \(Einsum, opset 16\): equation nchw->nchw: not two operands .*supported: a batched matrix product/,
    );
  });
  it('a file that is not ONNX, and an empty one', () => {
    expectUsage(
      uap(
        'accuracy',
        '-m',
        write(
          'junk.onnx',
          Uint8Array.from({ length: 200 }, (_, i) => (i * 37) % 256),
        ),
      ),
      /junk\.onnx: not an ONNX model/,
    );
    expectUsage(uap('accuracy', '-m', write('empty.onnx', new Uint8Array(0))), /empty\.onnx: not an ONNX model/);
  });
  it('a model held in a Node Buffer at any offset (as readFileSync gives it) parses to the same weights', () => {
    const g = new OnnxGraph();
    g.opMulti('Add', ['x', g.floats([1.5, -2, 3.25], [3])], ['y']);
    const bytes = g.encode([['x', [3]]], [['y', [3]]]);
    // A Buffer's slice is a view of its pool: the weights must be copied from the right bytes.
    for (const skip of [1, 3, 4]) {
      const inPool = Buffer.concat([Buffer.alloc(skip), Buffer.from(bytes), Buffer.alloc(5)]).subarray(skip, skip + bytes.length);
      const [w] = parseOnnx(inPool, 'pooled.onnx').initializers.values();
      expect([...w.data]).toEqual([1.5, -2, 3.25]);
    }
  });
  it('no preprocessing given: the torchvision mean / std are suggested', () => {
    expectUsage(uap('accuracy', '-m', write('tiny.onnx', tinyModel())), /--mean 123\.675,116\.28,103\.53 --std 58\.395,57\.12,57\.375/);
  });
  it('a dynamic image size needs --input-shape; with it the model loads', () => {
    const p = write('dynamic.onnx', tinyModel(undefined, ['N', 3, 'H', 'W']));
    expectUsage(uap('accuracy', '-m', p, ...TORCHVISION), /dynamic size \[N, 3, H, W\]; give the image size with --input-shape/);
    const ok = uap(
      'accuracy',
      '-m',
      p,
      ...TORCHVISION,
      '--input-shape',
      '8x8x3',
      '--data',
      join(EMBEDDED_DIR, 'images', 'val'),
      '--limit',
      '8',
    );
    expect(ok.status, ok.stderr).toBe(0);
  });
  it('external data: read beside the model; a location outside its folder is refused', async () => {
    const { onnx } = onnxProto;
    const bytes = (location: string) => {
      const m = onnx.ModelProto.decode(tinyModel());
      const w = m.graph!.initializer![0] as InstanceType<typeof onnx.TensorProto>;
      writeFileSync(join(dir, 'weights.bin'), Buffer.concat([Buffer.alloc(16), Buffer.from(w.rawData!)]));
      w.rawData = new Uint8Array(0);
      w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      w.externalData = [
        { key: 'location', value: location },
        { key: 'offset', value: '16' },
      ];
      return onnx.ModelProto.encode(m).finish();
    };
    const p = write('external.onnx', bytes('weights.bin'));
    const model = await loadClassifier(p, { backend, card: { preprocess: { scale: 1 / 255 }, numClasses: 4 } });
    expect(model.numClasses).toBe(4);
    model.dispose();
    expectUsage(
      uap('accuracy', '-m', write('escape.onnx', bytes('../weights.bin')), ...TORCHVISION),
      /external data "\.\.\/weights\.bin" lies outside the model's folder/,
    );
  });
  it('on ONNX Runtime the weights are read again for TF.js and feature layers, built in a tidy, refused once the file changed', async () => {
    const p = write('reread.onnx', tinyModel());
    const model = await loadClassifier(p, { backend, card: { preprocess: { scale: 1 / 255 }, numClasses: 4 } });
    expect(model.runsOn).toBe('onnxruntime');
    const x = tf.randomUniform([2, ...model.inputShape], 0, 255, 'float32', 4) as tf.Tensor4D;
    const want = await model.runtime.forward(batchOfTensor(x));
    // First TF.js use inside a tidy: the graph's weights outlive it (a second call still runs).
    tf.tidy(() => model.logits(x).dataSync());
    const twice = tf.tidy(() => Array.from(model.logits(x).dataSync()));
    expect(maxRelativeDifference(Float32Array.from(twice), want)).toBeLessThan(1e-4);
    const features = await model.features!();
    expect(features.layers.length).toBeGreaterThan(0);
    features.dispose();
    writeFileSync(p, Buffer.concat([readFileSync(p), Buffer.alloc(1)]));
    await expect(model.features!()).rejects.toThrow(/reread\.onnx changed or went away since it was loaded/);
    x.dispose();
    model.dispose();
  });
  it('fine-tuning an ONNX model is refused, saying why', () => {
    expectUsage(
      uap('finetune', '-m', join(DIR, 'stem-op17.onnx'), ...TORCHVISION),
      /ONNX models are imported as fixed graphs for attacks only/,
    );
  });
});

describe('uap on an imported PyTorch model, end to end', () => {
  it('compute (Algorithm 1 and SGD-UAP) and evaluate run from the command line', () => {
    const out = mkdtempSync(join(tmpdir(), 'uap-onnx-run-'));
    const model = join(DIR, 'stem-op17.onnx');
    const data = [
      '--data',
      join(EMBEDDED_DIR, 'images', 'craft'),
      '--val',
      join(EMBEDDED_DIR, 'images', 'val'),
      '--limit',
      '24',
      '--val-limit',
      '24',
    ];
    for (const method of ['algorithm1', 'sgd']) {
      const r = uap(
        'compute',
        '-m',
        model,
        ...TORCHVISION,
        ...data,
        '--method',
        method,
        '--max-passes',
        '1',
        '--xi',
        '40',
        '-o',
        join(out, method),
      );
      expect(r.status, r.stderr).toBe(0);
      expect(existsSync(join(out, method, 'perturbation.npy'))).toBe(true);
    }
    const ev = uap(
      'evaluate',
      '-m',
      model,
      ...TORCHVISION,
      '--perturbation',
      join(out, 'sgd', 'perturbation.npy'),
      '-d',
      join(EMBEDDED_DIR, 'images', 'val'),
      '--limit',
      '24',
      '-o',
      join(out, 'eval'),
    );
    expect(ev.status, ev.stderr).toBe(0);
    expect(ev.stdout).toMatch(/fooling rate/i);
    // The analyses take the run of an imported model like any other.
    for (const args of [
      ['graph', '--run', join(out, 'sgd')],
      ['baseline', '--run', join(out, 'sgd'), '--factors', '0,1', '--draws', '1'],
      ['report', join(out, 'sgd')],
    ]) {
      const r = uap(...args);
      expect(r.status, `${args[0]}: ${r.stderr}`).toBe(0);
    }
    expect(existsSync(join(out, 'sgd', 'graph.svg'))).toBe(true);
    expect(existsSync(join(out, 'sgd', 'baseline.json'))).toBe(true);
    rmSync(out, { recursive: true, force: true });
  });
});

describe('each load checks the import against the file itself, run by ONNX Runtime', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'uap-onnx-ref-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** tinyModel's classifier, its logits then through `last` (named "probs"), for a batch of `batch`. */
  const ending = (last?: 'Softmax' | 'LogSoftmax' | 'Identity', batch: number | string = 'N') => {
    const g = new OnnxGraph();
    const x = g.op(
      'Conv',
      [
        'input',
        g.floats(
          Float32Array.from({ length: 108 }, (_, i) => Math.sin(i) / 10),
          [4, 3, 3, 3],
        ),
      ],
      {
        kernel_shape: [3, 3],
        pads: [1, 1, 1, 1],
      },
    );
    const out = last ? 'probs' : 'logits';
    g.opMulti('Flatten', [g.op('GlobalAveragePool', [x])], ['z']);
    g.opMulti(last ?? 'Identity', ['z'], [out], last && last !== 'Identity' ? { axis: 1 } : {});
    return g.encode([['input', [batch, 3, 8, 8]]], [[out, [batch, 4]]]);
  };
  const reference = (bytes: Uint8Array, card: Parameters<typeof fileReference>[2] = {}) =>
    fileReference(parseOnnx(bytes, 'm.onnx'), 'm.onnx', card);

  it('fetches the logits output, or the softmax after them, in the form it gives', () => {
    expect(reference(ending())).toEqual({ output: 'logits', outputIs: 'logits' });
    expect(reference(ending('Identity'))).toEqual({ output: 'probs', outputIs: 'logits' });
    expect(reference(ending('Softmax'))).toEqual({ output: 'probs', outputIs: 'probabilities' });
    expect(reference(ending('LogSoftmax'))).toEqual({ output: 'probs', outputIs: 'log-probabilities' });
    // Nothing it can compare with: an inner value as the logits.
    expect(reference(ending('Softmax'), { logitsLayer: 'z' })).toBeUndefined();
    // A softmax the import skips cannot also be read as probabilities (log of logits): refused.
    expect(() => reference(ending('Softmax'), { outputIsProbabilities: true })).toThrow(
      /m\.onnx: the graph ends in Softmax, which the import skips .*do not mark its output as probabilities/,
    );
  });
  it('compares logits with probabilities and log-probabilities up to their normaliser', () => {
    const z = Float32Array.from([2, -1, 0.5, 3]);
    const lse = Math.log(z.reduce((s, v) => s + Math.exp(v), 0));
    const ref = (outputIs: 'logits' | 'probabilities' | 'log-probabilities') => ({
      file: '',
      input: '',
      channelsFirst: true,
      output: '',
      outputIs,
    });
    expect(
      referenceDifference(
        ref('log-probabilities'),
        z,
        z.map((v) => v - lse),
      ),
    ).toBeLessThan(1e-6);
    expect(
      referenceDifference(
        ref('probabilities'),
        z,
        z.map((v) => Math.exp(v - lse)),
      ),
    ).toBeLessThan(1e-6);
    // The shift matters for logits; another order of the classes matters for all three.
    expect(
      referenceDifference(
        ref('logits'),
        z,
        z.map((v) => v - lse),
      ),
    ).toBeGreaterThan(0.5);
    const swapped = Float32Array.from([z[1], z[0], z[2], z[3]]);
    for (const form of ['logits', 'probabilities', 'log-probabilities'] as const) {
      const file =
        form === 'probabilities' ? swapped.map((v) => Math.exp(v - lse)) : form === 'logits' ? swapped : swapped.map((v) => v - lse);
      expect(referenceDifference(ref(form), z, file)).toBeGreaterThan(0.1);
    }
  });
  it.runIf(ortPresent)('runs the file on the probe image in its own layout, once per runner; not a batch of fixed size 2', async () => {
    const runFile = async (...args: Parameters<FileRunner['run']>) => (await FileRunner.start())!.run(...args);
    const shape: [number, number, number] = [8, 8, 3];
    const probe = probeImage(shape);
    try {
      const p = join(dir, 'run.onnx');
      writeFileSync(p, ending('Softmax'));
      const out = await runFile(p, 'probs', probe, (x) => tf.div(x, 255));
      // The NCHW file and the Net (NHWC) agree on the probe.
      const net = onnxNet(parseOnnx(ending(), p), p, { inputShape: shape });
      const graph = netToTfGraph(net, shape);
      const z = tf.tidy(() => runPlainGraph(graph, tf.div(probe, 255) as tf.Tensor4D).dataSync() as Float32Array);
      tf.dispose(graph.owned);
      expect(out?.dims).toEqual([1, 4]);
      expect(referenceDifference({ output: 'probs', outputIs: 'probabilities' }, z, out!.data)).toBeLessThan(1e-6);
      writeFileSync(p, ending(undefined, 2));
      expect(await runFile(p, 'logits', probe, (x) => x)).toBeUndefined();
      // A runner runs once; one a load did not need ends when disposed.
      const runner = (await FileRunner.start())!;
      writeFileSync(p, ending('Softmax'));
      expect(await runner.run(p, 'probs', probe, (x) => tf.div(x, 255))).toBeDefined();
      expect(await runner.run(p, 'probs', probe, (x) => tf.div(x, 255))).toBeUndefined();
      const idle = (await FileRunner.start())!;
      idle.dispose();
      expect(await idle.run(p, 'probs', probe, (x) => tf.div(x, 255))).toBeUndefined();
    } finally {
      probe.dispose();
    }
  });
  it.runIf(ortPresent)('a model ending in softmax loads on ONNX Runtime with the logits before it', async () => {
    for (const last of ['Softmax', 'LogSoftmax'] as const) {
      const p = join(dir, `${last}.onnx`);
      writeFileSync(p, ending(last));
      const model = await loadClassifier(card('tiny', { inputShape: [8, 8, 3], numClasses: 4, preprocess: { scale: 1 / 255 } }, p), {
        backend,
      });
      try {
        expect(model.runsOn).toBe('onnxruntime');
      } finally {
        model.dispose();
      }
    }
  });
  it.runIf(ortPresent && existsSync('/proc/self/task'))(
    'the process of the reference run is gone after a load, and after a refused one',
    async () => {
      // A thread may end between the listing and the read (a worker's): it has no children then.
      const childrenOf = (t: string) => {
        try {
          return readFileSync(`/proc/self/task/${t}/children`, 'utf8');
        } catch {
          return '';
        }
      };
      const children = () => readdirSync('/proc/self/task').flatMap((t) => childrenOf(t).split(' ').filter(Boolean));
      const before = new Set(children());
      // A killed process leaves the list once Node has reaped it: waited for, up to 10 s on a busy machine.
      const started = async () => {
        for (let i = 0; i < 200 && children().some((c) => !before.has(c)); i++) await new Promise((wake) => setTimeout(wake, 50));
        return children().filter((c) => !before.has(c));
      };
      const p = join(dir, 'gone.onnx');
      writeFileSync(p, ending('Softmax'));
      const tiny = (o: object = {}) => ({
        ...card('tiny', { inputShape: [8, 8, 3], numClasses: 4, preprocess: { scale: 1 / 255 } }, p),
        ...o,
      });
      const model = await loadClassifier(tiny(), { backend });
      model.dispose();
      expect(await started()).toEqual([]);
      await expect(loadClassifier(tiny({ outputIsProbabilities: true }), { backend })).rejects.toThrow(/Softmax/);
      expect(await started()).toEqual([]);
    },
  );
  it.runIf(ortPresent)('an export the file disagrees with runs on TF.js; an import it disagrees with is refused', async () => {
    const bytes = ending();
    const file = join(dir, 'tiny.onnx');
    writeFileSync(file, bytes);
    const shape: [number, number, number] = [8, 8, 3];
    const net = onnxNet(parseOnnx(bytes, file), file, { inputShape: shape });
    const graph = netToTfGraph(net, shape);
    const logits = (x: tf.Tensor4D) => runPlainGraph(graph, x) as tf.Tensor2D;
    const released: string[] = [];
    const probe = probeImage(shape);
    const z = tf.tidy(() => logits(probe).dataSync() as Float32Array);
    probe.dispose();
    const check = (shift: (z: Float32Array) => Float32Array) => ({ file, run: async () => shift(z), difference: maxRelativeDifference });
    // The file agrees: ONNX Runtime runs it, and the Net was let go before the sessions were built.
    const ok = await onnxOn(
      () => net,
      shape,
      logits,
      'cpu',
      () => released.push('net'),
      check((z) => z),
    );
    expect('runtime' in ok).toBe(true);
    if ('runtime' in ok) await ok.runtime.dispose();
    expect(released.length).toBeGreaterThan(0);
    // The file's logits differ and TF.js (the same Net) agrees with the export: the import is wrong.
    await expect(
      onnxOn(
        () => net,
        shape,
        logits,
        'cpu',
        () => undefined,
        check((z) => z.map((v, i) => (i === 0 ? v + 1 : v))),
      ),
    ).rejects.toThrow(
      /tiny\.onnx: uap's import computes other logits than ONNX Runtime running the file \(max relative difference .* on a probe image\)/,
    );
    // TF.js agrees with the file, the export does not: the model runs on TF.js, saying why.
    const tfjsSide = (x: tf.Tensor4D) => tf.add(logits(x), tf.tensor2d([[1, 0, 0, 0]])) as tf.Tensor2D;
    const onTfjs = await onnxOn(
      () => net,
      shape,
      tfjsSide,
      'cpu',
      () => undefined,
      check((z) => z.map((v, i) => (i === 0 ? v + 1 : v))),
    );
    expect(onTfjs).toEqual({ why: 'the ONNX export disagreed with the model file on a probe image' });
    tf.dispose(graph.owned);
  });
  it('--probabilities on a model that ends in Softmax: exit 2, one line', () => {
    const p = join(dir, 'softmax-cli.onnx');
    writeFileSync(p, ending('Softmax'));
    const r = uap('accuracy', '-m', p, ...TORCHVISION, '--probabilities', '--num-classes', '4', '--input-shape', '8x8x3');
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/softmax-cli\.onnx: the graph ends in Softmax, which the import skips/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
