import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '../src/tf.js';
import './helpers.js';
import { weights, SLICE_END, type Net, type NetNode, type NodeOp, type OpOf, type Activation } from '../src/engine/net.js';
import { netToTfGraph } from '../src/engine/tfjs/tfjsNet.js';
import { runPlainGraph } from '../src/engine/tfjs/plainGraph.js';
import { exportOnnx, exportOnnxEach, OnnxUnsupported } from '../src/engine/onnx/export.js';
import {
  defaultLayout,
  forwardImagesPerRun,
  eagerModels,
  loadOrt,
  onnxRuntime,
  shareOptimised,
  shares,
  weightBytes,
} from '../src/engine/onnx/runtime.js';
import { multiplyAdds } from '../src/engine/shapes.js';
import type { Classifier } from '../src/classifier/classifier.js';
import { initBackend, tfjsBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { candidateGradients, candidateGradientsLoop, type GradientScratch } from '../src/classifier/gradients.js';
import { maxPoolInputGrad } from '../src/engine/tfjs/inputgrad.js';
import { loadSet } from '../src/data/sets.js';
import { DEFAULT_BATCH, predictSet, scoringBatch } from '../src/evaluation/scoring.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { basename, join } from 'node:path';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import onnxProto from 'onnx-proto';
import { NCHWC_DOMAIN, OnnxGraph } from '../src/engine/onnx/builder.js';
import { nchwcBlock } from '../src/engine/onnx/nchwc.js';
import { shareSavedInitializers } from '../src/engine/onnx/sharedInitializers.js';
import { hostname, tmpdir } from 'node:os';
import { maxRelativeDifference, selfCheckNet, SELF_CHECK_SHAPE } from '../src/engine/selfcheck.js';
import { SessionPool } from '../src/engine/onnx/workerPool.js';
import { ModelFiles } from '../src/engine/onnx/modelFiles.js';
import { batchOfTensor } from '../src/engine/tfjs/batchTensor.js';
import { withoutFactorPasses } from '../bench/factorPasses.js';

/** Deterministic weights of a shape. */
const w = (shape: number[], seed: number) =>
  weights(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(seed * 3.7 + i * 0.91) * 0.6),
    shape,
  );

/** A chain of nodes on [8, 8, 3] input ending in a dense layer to 4 classes. */
function chainNet(body: { op: NodeOp; inputs?: string[] }[], flatSize: number): Net {
  const nodes: NetNode[] = [];
  let prev = 'x';
  body.forEach((b, i) => {
    nodes.push({ name: `n${i}`, inputs: b.inputs ?? [prev], op: b.op });
    prev = `n${i}`;
  });
  nodes.push({ name: 'flat', inputs: [prev], op: { kind: 'reshape', shape: [-1] } });
  nodes.push({ name: 'fc', inputs: ['flat'], op: { kind: 'dense', kernel: w([flatSize, 4], 99), bias: w([4], 98), act: 'linear' } });
  return { input: 'x', nodes, output: 'fc' };
}

const conv = (
  cin: number,
  cout: number,
  k: number,
  s: number,
  padding: 'same' | 'valid',
  act: Activation = 'linear',
  seed = 1,
): NodeOp => ({
  kind: 'conv',
  group: 1,
  kernel: w([k, k, cin, cout], seed),
  bias: w([cout], seed + 1),
  strides: [s, s],
  padding,
  act,
});

const SHAPE: [number, number, number] = [8, 8, 3];

/** TF.js cpu reference: logits and dx for dy. */
function reference(net: Net, x: tf.Tensor4D, dy: tf.Tensor2D): { logits: Float32Array; dx: Float32Array } {
  const g = netToTfGraph(net, x.shape.slice(1));
  let logits!: Float32Array;
  const dx = tf
    .grad((t: tf.Tensor) => {
      const y = runPlainGraph(g, t);
      logits = y.dataSync() as Float32Array;
      return tf.sum(tf.mul(y, dy));
    })(x)
    .dataSync() as Float32Array;
  tf.dispose(g.owned);
  return { logits, dx };
}

const cases: [string, Net][] = [
  [
    'conv stride 2 same + relu6, depthwise, 1x1 conv',
    chainNet(
      [
        { op: conv(3, 4, 3, 2, 'same', 'relu6') },
        { op: { kind: 'conv', group: 4, kernel: w([3, 3, 1, 4], 5), strides: [1, 1], padding: 'same', act: 'relu' } },
        { op: conv(4, 2, 1, 1, 'valid', 'linear', 7) },
      ],
      4 * 4 * 2,
    ),
  ],
  ['conv stride 2 valid, odd geometry (remainder rows)', chainNet([{ op: conv(3, 2, 3, 2, 'valid', 'tanh') }], 3 * 3 * 2)],
  [
    'average pool 2x2 valid, max pool 2x2 same, leaky relu, sigmoid',
    chainNet(
      [
        { op: conv(3, 3, 3, 1, 'same', { leaky: 0.2 }) },
        { op: { kind: 'pool', mode: 'avg', size: [2, 2], strides: [2, 2], padding: 'valid' } },
        { op: { kind: 'act', act: 'sigmoid' } },
        { op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [2, 2], padding: 'same' } },
      ],
      2 * 2 * 3,
    ),
  ],
  [
    'overlapping max pools over negative values: 3x3/2 same, 3x3/1 same, 2x2/1 valid',
    chainNet(
      [
        { op: conv(3, 3, 3, 1, 'same', 'linear', 31) },
        { op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'same' } },
        { op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [1, 1], padding: 'same' } },
        { op: { kind: 'pool', mode: 'max', size: [2, 2], strides: [1, 1], padding: 'valid' } },
      ],
      3 * 3 * 3,
    ),
  ],
  [
    'overlapping max pool 3x3/2 valid (unused last row)',
    chainNet(
      [
        { op: conv(3, 2, 3, 1, 'same', 'tanh', 33) },
        { op: { kind: 'pool', mode: 'max', size: [3, 3], strides: [2, 2], padding: 'valid' } },
      ],
      3 * 3 * 2,
    ),
  ],
  [
    'pad, affine, elu, relu1, global mean (keepDims)',
    chainNet(
      [
        {
          op: {
            kind: 'pad',
            pads: [
              [0, 0],
              [1, 2],
              [0, 1],
              [0, 0],
            ],
          },
        },
        { op: { kind: 'affine', scale: w([3], 11), shift: w([3], 12) } },
        { op: { kind: 'act', act: 'elu' } },
        { op: conv(3, 5, 3, 2, 'same', 'relu1', 13) },
        { op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: true } },
      ],
      5,
    ),
  ],
  [
    'residual add, product, difference with a constant first, concat on channels',
    chainNet(
      [
        { op: conv(3, 3, 3, 1, 'same', 'relu6', 21) },
        { op: conv(3, 3, 1, 1, 'valid', 'linear', 23), inputs: ['n0'] },
        { op: { kind: 'binary', op: 'add', act: 'relu' }, inputs: ['n0', 'n1'] },
        { op: { kind: 'binary', op: 'mul', act: 'linear' }, inputs: ['n2', 'n1'] },
        { op: { kind: 'binary', op: 'sub', act: 'linear', constant: { weights: w([3], 25), first: true } } },
        { op: { kind: 'concat', axis: -1, act: 'linear' }, inputs: ['n4', 'n0'] },
        { op: { kind: 'reshape', shape: [4, 16, 6] } },
        { op: { kind: 'reshape', shape: [8, 8, 6] } },
      ],
      8 * 8 * 6,
    ),
  ],
  [
    'channel reversal (BGR), and after the dense layer: slice, log of softmax',
    {
      input: 'x',
      output: 'log',
      nodes: [
        { name: 'bgr', inputs: ['x'], op: { kind: 'slice', axis: -1, begin: -1, end: -SLICE_END, step: -1 } },
        { name: 'c', inputs: ['bgr'], op: conv(3, 2, 3, 2, 'same', 'relu', 31) },
        { name: 'flat', inputs: ['c'], op: { kind: 'reshape', shape: [-1] } },
        { name: 'fc', inputs: ['flat'], op: { kind: 'dense', kernel: w([32, 6], 32), act: 'linear' } },
        { name: 'sl', inputs: ['fc'], op: { kind: 'slice', axis: -1, begin: 1, end: SLICE_END, step: 1 } },
        { name: 'sm', inputs: ['sl'], op: { kind: 'act', act: 'softmax' } },
        { name: 'log', inputs: ['sm'], op: { kind: 'act', act: 'log' } },
      ],
    },
  ],
];

/** An inverted-residual chain whose channels fill whole blocks (8 and 16): the gradient graph holds it blocked. */
const blockedNet = chainNet(
  [
    { op: conv(3, 16, 3, 2, 'same', 'relu6', 41) },
    { op: conv(16, 8, 1, 1, 'valid', 'linear', 43) },
    { op: conv(8, 16, 1, 1, 'valid', 'relu6', 45) },
    { op: { kind: 'conv', group: 16, kernel: w([3, 3, 1, 16], 47), strides: [1, 1], padding: 'same', act: 'relu6' } },
    { op: conv(16, 8, 1, 1, 'valid', 'linear', 49) },
    { op: { kind: 'binary', op: 'add', act: 'linear' }, inputs: ['n1', 'n4'] },
    { op: { kind: 'act', act: 'relu' } },
    { op: { kind: 'conv', group: 8, kernel: w([3, 3, 1, 8], 51), strides: [2, 2], padding: 'same', act: 'relu' } },
    { op: { kind: 'act', act: 'sigmoid' } },
  ],
  2 * 2 * 8,
);
cases.push(['inverted residual on whole channel blocks (blocked gradient graph)', blockedNet]);

const depthwise = (c: number, s: number, act: Activation, seed: number): NodeOp => ({
  kind: 'conv',
  group: c,
  kernel: w([3, 3, 1, c], seed),
  bias: w([c], seed + 1),
  strides: [s, s],
  padding: 'same',
  act,
});

/**
 * Squeeze-and-excitation blocks (EfficientNet's, and a Keras-style one through a dense layer) on 12
 * channels, which a block of 8 or 16 pads: blocked values broadcast against 1x1 ones, blocked global
 * means, padded lanes through SiLU, sigmoid and a strided depthwise layer by output phase.
 */
const squeezeNet = chainNet(
  [
    { op: conv(3, 12, 3, 1, 'same', 'silu', 61) },
    { op: depthwise(12, 2, 'silu', 63) },
    { op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: true } },
    { op: conv(12, 4, 1, 1, 'valid', 'silu', 65) },
    { op: conv(4, 12, 1, 1, 'valid', 'sigmoid', 67) },
    { op: { kind: 'binary', op: 'mul', act: 'linear' }, inputs: ['n1', 'n4'] },
    { op: conv(12, 16, 1, 1, 'valid', 'relu', 69) },
    { op: { kind: 'reduce', mode: 'mean', axes: [1, 2], keepDims: false } },
    { op: { kind: 'dense', kernel: w([16, 16], 71), act: 'sigmoid' } },
    { op: { kind: 'reshape', shape: [1, 1, 16] } },
    { op: { kind: 'binary', op: 'mul', act: 'linear' }, inputs: ['n6', 'n9'] },
    { op: { kind: 'reduce', mode: 'sum', axes: [1, 2], keepDims: true } },
    { op: { kind: 'binary', op: 'add', act: 'tanh' }, inputs: ['n10', 'n11'] },
  ],
  4 * 4 * 16,
);
cases.push(['squeeze-and-excitation on padded channel blocks (blocked gradient graph)', squeezeNet]);
/**
 * An inverted residual whose expansion (1x1, 8 -> 32) feeds a stride-2 depthwise layer: the depthwise
 * gradient's phases go to the expansion, which applies its activation's factor per phase and
 * interleaves its own 8-channel rows. ReLU6 (a boolean mask cut into phases) and SiLU (floats from the
 * kept pre-activation).
 */
const expansionNet = (act: Activation) =>
  chainNet(
    [
      { op: conv(3, 8, 3, 1, 'same', 'relu6', 101) },
      { op: conv(8, 32, 1, 1, 'valid', act, 103) },
      { op: depthwise(32, 2, 'relu6', 105) },
      { op: conv(32, 8, 1, 1, 'valid', 'linear', 107) },
    ],
    4 * 4 * 8,
  );
cases.push(['expansion before a strided depthwise layer, ReLU6: rows by phase (blocked gradient graph)', expansionNet('relu6')]);
cases.push(['expansion before a strided depthwise layer, SiLU: rows by phase (blocked gradient graph)', expansionNet('silu')]);

/**
 * GoogLeNet's pattern on whole channel blocks: max pools (one strided with a ceil-mode end pad, two
 * 3x3/1 ones, the second over a pooled map) and an inception join of three branches, after ReLUs whose
 * zeros tie inside windows: blocked pools and a blocked join, the pools' first-maximum gradient.
 */
const maxPoolPad = (before: number, after: number): NodeOp => ({
  kind: 'pool',
  mode: 'max',
  size: [3, 3],
  strides: [before === after ? 1 : 2, before === after ? 1 : 2],
  padding: [
    [before, after],
    [before, after],
  ],
});
const inceptionNet = chainNet(
  [
    { op: conv(3, 16, 3, 1, 'same', 'relu', 91) },
    { op: maxPoolPad(0, 1) },
    { op: conv(16, 16, 1, 1, 'valid', 'relu', 93) },
    { op: conv(16, 16, 3, 1, 'same', 'relu', 95), inputs: ['n1'] },
    { op: maxPoolPad(1, 1), inputs: ['n1'] },
    { op: conv(16, 16, 1, 1, 'valid', 'relu', 97) },
    { op: { kind: 'concat', axis: -1, act: 'linear' }, inputs: ['n2', 'n3', 'n5'] },
    { op: maxPoolPad(1, 1) },
    { op: conv(48, 4, 1, 1, 'valid', 'linear', 89) },
  ],
  4 * 4 * 4,
);
cases.push(['inception join and max pools on whole channel blocks, ReLU ties (blocked gradient graph)', inceptionNet]);
// Padding lanes hold zeros after a linear convolution: a reciprocal or a quotient there would make
// infinities that a following convolution's zero weights turn into NaN in real channels.
cases.push([
  'reciprocal and quotient on channels a block pads (left unblocked)',
  chainNet(
    [
      { op: conv(3, 12, 3, 2, 'same', 'tanh', 81) },
      // A bias of 8 keeps real channels away from 0; the padding lanes' bias is 0.
      { op: { ...(conv(12, 12, 1, 1, 'valid', 'linear', 83) as OpOf<'conv'>), bias: weights(new Float32Array(12).fill(8), [12]) } },
      { op: { kind: 'act', act: 'reciprocal' } },
      { op: conv(12, 12, 1, 1, 'valid', 'tanh', 85) },
      { op: { kind: 'binary', op: 'div', act: 'linear' }, inputs: ['n3', 'n1'] },
      { op: conv(12, 4, 1, 1, 'valid', 'linear', 87) },
    ],
    4 * 4 * 4,
  ),
]);

/** The nodes of `net`'s gradient graph as exported with channel block `block` (0: not blocked). */
const vjpNodes = (net: Net, block = nchwcBlock()) =>
  onnxProto.onnx.ModelProto.decode(exportOnnx(net, SHAPE, ['vjp'], 'cpu', block).vjp).graph!.node!;

/** How many nodes of each kind `net`'s blocked gradient graph holds ('nchwc.Conv' for the blocked domain's). */
function nodeKinds(net: Net): Record<string, number> {
  const count: Record<string, number> = {};
  for (const n of vjpNodes(net)) {
    const kind = `${n.domain ? 'nchwc.' : ''}${n.opType}`;
    count[kind] = (count[kind] ?? 0) + 1;
  }
  return count;
}

const ortPresent = (await loadOrt()) !== null;
if (!ortPresent) console.warn('SKIPPED ONNX tests: onnxruntime-node cannot load here');

describe.skipIf(!ortPresent)('ONNX export: forward and hand-built backward graph vs TF.js autodiff (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });
  it.each(cases)('%s', async (_name, net) => {
    const x = tf.randomUniform([3, ...SHAPE], -2, 3, 'float32', 5) as tf.Tensor4D;
    const k = net.output === 'log' ? 5 : 4;
    const dyArr = Float32Array.from({ length: 3 * k }, (_, i) => Math.cos(i * 1.9));
    const ref = reference(net, x, tf.tensor2d(dyArr, [3, k]));
    const rt = (await onnxRuntime(net, SHAPE))!;
    const fwd = await rt.forward(batchOfTensor(x));
    const back = await rt.vjp(batchOfTensor(x), dyArr);
    expect(maxRelativeDifference(fwd, ref.logits)).toBeLessThan(1e-5);
    expect(maxRelativeDifference(back.logits, ref.logits)).toBeLessThan(1e-5);
    expect(maxRelativeDifference(back.dx, ref.dx)).toBeLessThan(1e-4);
    await rt.dispose();
  });

  it.skipIf(!nchwcBlock())("the gradient graph in ONNX Runtime's blocked layout: its kernels, no reorders between them", () => {
    const blocked = vjpNodes(blockedNet);
    const ofKind = (type: string) => blocked.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === type).length;
    // Every convolution but the stem (3 input channels), forward and backward: 5, then 4 stride-1
    // ones and the strided depthwise one's 4 output phases.
    expect(ofKind('Conv')).toBe(13);
    expect(blocked.filter((n) => n.opType === 'ConvTranspose').length).toBe(1); // the stem's
    // Into the blocked chain after the stem and back out before the flattening, once each per pass.
    expect(ofKind('ReorderInput') + ofKind('ReorderOutput')).toBe(4);
    expect(vjpNodes(blockedNet, 0).some((n) => n.domain)).toBe(false);
  });

  it.skipIf(!nchwcBlock())('squeeze-and-excitation blocks stay blocked: 1x1 values by reshape, full-size ones never reordered', () => {
    const count = nodeKinds(squeezeNet);
    expect(count['nchwc.Conv']).toBe(11); // 4 forward; backward the depthwise layer's 4 output phases and three 1x1
    expect(count['nchwc.GlobalAveragePool']).toBe(5); // two means, and the sums of three broadcast operands' rows
    // Into the blocked chain after the stem and back out before the flattening, once each per pass.
    expect((count['nchwc.ReorderInput'] ?? 0) + (count['nchwc.ReorderOutput'] ?? 0)).toBe(4);
    expect(count.Transpose).toBe(2); // the NHWC image in, its gradient out
  });

  it.skipIf(!nchwcBlock())('an expansion takes a strided depthwise gradient by phase and interleaves its narrower rows', () => {
    for (const act of ['relu6', 'silu'] as const) {
      const nodes = vjpNodes(expansionNet(act));
      const blockedConvs = nodes.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv');
      // Forward: expansion, depthwise, projection; backward: projection, the depthwise layer's 4 phases, and
      // the expansion once per phase (9 in all without phases).
      expect(blockedConvs.length).toBe(12);
      // One interleave (two concatenations over its columns, one over its rows), of 8-channel rows: the
      // depthwise layer's 32-channel one is left out of the graph.
      const interleaves = nodes.filter((n) => n.opType === 'Concat' && n.attribute!.some((a) => a.name === 'axis' && Number(a.i) === 3));
      expect(interleaves.length).toBe(2);
    }
  });

  it.each(['relu6', 'silu'] as const)(
    "bench:vjp-profile's factor counterfactuals (%s): without factors the gradient is the linear chain's",
    async (act) => {
      const ort = (await loadOrt())!;
      const net = expansionNet(act); // ReLU6 masks whole and (relu6) cut into phases; SiLU's floats cut into phases
      const linear: Net = { ...net, nodes: net.nodes.map((n) => ({ ...n, op: { ...n.op, act: 'linear' } }) as NetNode) };
      const vjp = exportOnnx(net, SHAPE, ['vjp'], 'cpu').vjp;
      const none = withoutFactorPasses(vjp, 'none');
      const prebuilt = withoutFactorPasses(vjp, 'prebuilt');
      const kinds = (bytes: Uint8Array) => onnxProto.onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType ?? '');
      const count = (bytes: Uint8Array, op: string) => kinds(bytes).filter((k) => k === op).length;
      expect(none.factors).toBeGreaterThanOrEqual(3);
      // Prebuilt: every product stays, nothing builds a factor: no mask, and of SiLU's factor y + s (1 - y)
      // neither its Sigmoid, Sub, Mul nor Add (the forward's own x * s stays).
      for (const op of ['Greater', 'Less', 'And', 'Cast']) expect(count(prebuilt.bytes, op)).toBe(0);
      const built = act === 'silu' ? { Sigmoid: 1, Sub: 1, Mul: 1, Add: 1 } : { Mul: 0 };
      for (const [op, k] of Object.entries(built)) expect(count(prebuilt.bytes, op)).toBe(count(vjp, op) - k);
      const x = new ort.Tensor(
        'float32',
        Float32Array.from({ length: 2 * 8 * 8 * 3 }, (_, i) => Math.sin(i * 0.7) * 3),
        [2, ...SHAPE],
      );
      const dy = new ort.Tensor(
        'float32',
        Float32Array.from({ length: 2 * 4 }, (_, i) => Math.cos(i * 1.3)),
        [2, 1, 4],
      );
      const dxOf = async (bytes: Uint8Array) => {
        const s = await ort.InferenceSession.create(bytes);
        const dx = (await s.run({ x, dy })).dx.data as Float32Array;
        await s.release();
        return dx;
      };
      const [real, unfactored, chain, products] = await Promise.all(
        [vjp, none.bytes, exportOnnx(linear, SHAPE, ['vjp'], 'cpu').vjp, prebuilt.bytes].map(dxOf),
      );
      expect(maxRelativeDifference(unfactored, chain)).toBeLessThan(1e-5);
      expect(maxRelativeDifference(real, chain)).toBeGreaterThan(0.01); // the factors mattered
      expect(products.every(Number.isFinite)).toBe(true);
    },
  );

  it.skipIf(!nchwcBlock())("max pools and an inception join stay blocked: reorders only around the pools' indices", () => {
    const count = nodeKinds(inceptionNet);
    expect(count['nchwc.MaxPool']).toBe(3);
    expect(count.MaxPool).toBe(3); // each pool's argmax, once per image
    expect(count.Split).toBe(1); // the join's backward
    // Into the blocked chain after the stem and out before the flattening, once each per pass (4); per
    // pool, its input to NCHW for the argmax and its rows out and back (3 x 3).
    expect((count['nchwc.ReorderInput'] ?? 0) + (count['nchwc.ReorderOutput'] ?? 0)).toBe(13);
    expect(count.Transpose).toBe(2); // the NHWC image in, its gradient out
  });

  it.each([
    ['max pooling, leaky relu, sigmoid: every per-image factor', cases[2][1]],
    ['blocked rows (an inverted residual)', blockedNet],
  ])('k cotangents per image from one forward pass equal k separate products: %s', async (_name, net) => {
    const x = tf.randomUniform([2, ...SHAPE], -2, 3, 'float32', 6) as tf.Tensor4D;
    const k = 3;
    const dy = Float32Array.from({ length: 2 * k * 4 }, (_, i) => Math.sin(i * 2.3));
    const rt = (await onnxRuntime(net, SHAPE))!;
    const all = await rt.vjp(batchOfTensor(x), dy);
    const size = SHAPE[0] * SHAPE[1] * SHAPE[2];
    for (let j = 0; j < k; j++) {
      const one = Float32Array.from({ length: 2 * 4 }, (_, t) => dy[(Math.floor(t / 4) * k + j) * 4 + (t % 4)]);
      const ref = reference(net, x, tf.tensor2d(one, [2, 4]));
      for (let i = 0; i < 2; i++)
        expect(
          maxRelativeDifference(all.dx.subarray((i * k + j) * size, (i * k + j + 1) * size), ref.dx.subarray(i * size, (i + 1) * size)),
        ).toBeLessThan(1e-4);
    }
    await rt.dispose();
  });

  it('a pool of workers gives what one session gives, split by images or (fewer images than workers) by cotangents', async () => {
    const net = cases[2][1];
    const one = (await onnxRuntime(net, SHAPE, { layout: { workers: 1, threadsPerWorker: 1 } }))!;
    const three = (await onnxRuntime(net, SHAPE, { layout: { workers: 3, threadsPerWorker: 1 } }))!;
    expect(three.layout).toBe('3 workers x 1 thread');
    for (const [n, k] of [
      [5, 1],
      [4, 3],
      [1, 4],
      [2, 5],
      [1, 1],
    ]) {
      const x = tf.randomUniform([n, ...SHAPE], -2, 3, 'float32', n * 10 + k) as tf.Tensor4D;
      const dy = Float32Array.from({ length: n * k * 4 }, (_, i) => Math.sin(i * 1.3 + k));
      const [a, b] = [await one.vjp(batchOfTensor(x), dy), await three.vjp(batchOfTensor(x), dy)];
      expect(b.logits).toEqual(a.logits);
      expect(b.dx).toEqual(a.dx);
      expect(await three.forward(batchOfTensor(x))).toEqual(await one.forward(batchOfTensor(x)));
    }
    await Promise.all([one.dispose(), three.dispose()]);
  });

  it("a failed request rejects with ONNX Runtime's one-line message and leaves the pool usable", async () => {
    const rt = (await onnxRuntime(cases[0][1], SHAPE, { layout: { workers: 2, threadsPerWorker: 1 } }))!;
    const x = tf.randomUniform([2, ...SHAPE], -2, 3, 'float32', 1) as tf.Tensor4D;
    await expect(rt.vjp(batchOfTensor(x), new Float32Array(2 * 4 * 4 + 2))).rejects.toThrow(/^ONNX Runtime: [^\n]+$/);
    expect((await rt.forward(batchOfTensor(x))).length).toBe(8);
    await rt.dispose();
    await expect(rt.forward(batchOfTensor(x))).rejects.toThrow(/disposed/); // refused, not left hanging
  });

  it('shares: near-equal contiguous parts, none empty', () => {
    expect(shares(5, 2)).toEqual([
      [0, 2],
      [2, 5],
    ]);
    expect(shares(4, 4)).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
      [3, 4],
    ]);
    expect(defaultLayout(2)).toEqual({ workers: 2, threadsPerWorker: 1 });
    expect(defaultLayout(16)).toEqual({ workers: 4, threadsPerWorker: 4 });
    expect(defaultLayout(1)).toEqual({ workers: 1, threadsPerWorker: 1 });
    // Workers whose sessions fit in half the memory: VGG-16 (553 MB) on 8 GB gets one, with both cores.
    const GB = 2 ** 30;
    expect(defaultLayout(2, { weightBytes: 553e6, totalBytes: 8 * GB })).toEqual({ workers: 1, threadsPerWorker: 2, fitsMemory: true });
    expect(defaultLayout(2, { weightBytes: 553e6, totalBytes: 24 * GB })).toEqual({ workers: 2, threadsPerWorker: 1 });
    expect(defaultLayout(2, { weightBytes: 102e6, totalBytes: 8 * GB })).toEqual({ workers: 2, threadsPerWorker: 1 });
    expect(defaultLayout(16, { weightBytes: 553e6, totalBytes: 16 * GB })).toEqual({ workers: 3, threadsPerWorker: 5, fitsMemory: true });
    expect(defaultLayout(2, { weightBytes: 64e9, totalBytes: 8 * GB })).toEqual({ workers: 1, threadsPerWorker: 2, fitsMemory: true });
  });

  it("counts a network's weight bytes: every array its nodes hold, a binary op's constant too", () => {
    const net = chainNet(
      [
        { op: conv(3, 4, 3, 2, 'same') },
        { op: { kind: 'binary', op: 'add', constant: { weights: w([1, 1, 4], 5), first: false }, act: 'linear' } },
      ],
      4 * 4 * 4,
    );
    // conv kernel 3x3x3x4 and bias 4, the added constant 4, dense kernel 64x4 and bias 4; float32.
    expect(weightBytes(net)).toBe(4 * (3 * 3 * 3 * 4 + 4 + 4 + 64 * 4 + 4));
  });

  it('sizes forward runs to the model: multiply-adds counted from the graph, more images per run for small models', async () => {
    // conv 3 -> 4, 3x3, stride 2, same on 8x8: 4x4x4 outputs of 3*3*3 each; dense 64 -> 4: 4 x 64.
    const net = chainNet([{ op: conv(3, 4, 3, 2, 'same') }], 4 * 4 * 4);
    expect(multiplyAdds(net, SHAPE)).toBe(4 * 4 * 4 * 27 + 64 * 4);
    expect([forwardImagesPerRun(1.12e6), forwardImagesPerRun(13.6e6), forwardImagesPerRun(41e6), forwardImagesPerRun(1.8e9)]).toEqual([
      64, 7, 4, 4,
    ]);
    const rt = (await onnxRuntime(net, SHAPE, { layout: { workers: 3, threadsPerWorker: 1 } }))!;
    expect(rt.forwardBatch).toBe(3 * 64);
    // 200 images go in runs of 50 (4 runs, none over 64); each image alone is a run of one: the same logits.
    const x = tf.randomUniform([200, ...SHAPE], 0, 255, 'float32', 2) as tf.Tensor4D;
    const all = await rt.forward(batchOfTensor(x));
    for (const i of [0, 49, 50, 137, 199]) {
      const alone = tf.slice(x, [i, 0, 0, 0], [1, ...SHAPE]) as tf.Tensor4D;
      expect(Array.from(await rt.forward(batchOfTensor(alone)))).toEqual(Array.from(all.subarray(i * 4, (i + 1) * 4)));
      alone.dispose();
    }
    await rt.dispose();
    x.dispose();
  });

  it("scoring batches: the size asked for, else 32 or what the runtime needs for full runs, within the model's measured limit", () => {
    const model = (forwardBatch?: number, forward?: number) =>
      ({ runtime: { forwardBatch }, maxBatch: forward ? { forward, gradient: 1 } : undefined }) as unknown as Classifier;
    expect(scoringBatch(model(128), 16)).toBe(16);
    expect(scoringBatch(model(128))).toBe(128);
    expect(scoringBatch(model(8))).toBe(DEFAULT_BATCH);
    expect(scoringBatch(model(undefined))).toBe(DEFAULT_BATCH);
    expect(scoringBatch(model(undefined, 10))).toBe(10);
    expect(scoringBatch(model(128, 64), 100)).toBe(64);
  });

  it('refuses what it cannot express (an output that is not one logit per class), and names a node whose input does not fit', () => {
    const image: Net = { input: 'x', nodes: [{ name: 'c', inputs: ['x'], op: conv(3, 2, 3, 1, 'same') }], output: 'c' };
    expect(() => exportOnnx(image, SHAPE)).toThrow(OnnxUnsupported);
    expect(() => exportOnnx(image, SHAPE)).toThrow(/output c has shape \[8,8,2\], expected \[classes\]/);
    const misfit = chainNet([{ op: conv(4, 2, 3, 1, 'same') }], 8 * 8 * 2);
    expect(() => exportOnnx(misfit, SHAPE)).toThrow(
      /node n0 \(conv\): kernel \[3, 3, 4, 2\] with 1 group\(s\) does not fit 3 input channels/,
    );
  });
});

describe.skipIf(!ortPresent)('the embedded model on ONNX Runtime', () => {
  it('runs on onnxruntime and gives the TF.js candidate gradients', async () => {
    const backend = await initBackend();
    expect(backend.name).toBe('onnx');
    const onnx = await loadClassifier('fashion', { backend });
    const tfjs = await loadClassifier('fashion', { backend: tfjsBackend() });
    expect(onnx.runsOn).toBe('onnxruntime');
    expect([onnx.runtime.name, tfjs.runtime.name]).toEqual(['onnxruntime', 'wasm']);
    const x = tf.randomUniform([4, 28, 28, 1], 0, 255, 'float32', 3) as tf.Tensor4D;
    const cand = Int32Array.from({ length: 4 * 3 }, (_, i) => (i * 7) % 10);
    const a = await candidateGradients(onnx, batchOfTensor(x), cand, 3);
    const b = await candidateGradients(tfjs, batchOfTensor(x), cand, 3);
    expect(maxRelativeDifference(a.rows, b.rows)).toBeLessThan(1e-4);
    expect(maxRelativeDifference(a.logits, b.logits)).toBeLessThan(1e-5);
    x.dispose();
    onnx.dispose();
    tfjs.dispose();
  });
});

/** This host's name as the model folders spell it (written out here, not taken from modelFiles.ts). */
const HOST = hostname().replace(/[^A-Za-z0-9.]/g, '_');

describe.skipIf(!ortPresent)('forward passes on ONNX Runtime', () => {
  it('give the same labels as TF.js on the 200 bundled validation images', async () => {
    const backend = await initBackend();
    const onnx = await loadClassifier('fashion', { backend });
    const tfjs = await loadClassifier('fashion', { backend: tfjsBackend() });
    const V = await loadSet(onnx, join(EMBEDDED_DIR, 'images', 'val'), { assets: '', what: 'val' });
    expect(Array.from(await predictSet(onnx, V, null))).toEqual(Array.from(await predictSet(tfjs, V, null)));
    // With a perturbation: ONNX Runtime adds v to the stored bytes inside its graph, TF.js on tensors.
    const v = tf.randomUniform([28, 28, 1], -60, 60, 'float32', 9) as tf.Tensor3D;
    const [a, b] = [await predictSet(onnx, V, v, 16), await predictSet(tfjs, V, v, 16)];
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(await predictSet(onnx, V, null))); // v matters
    // The batch size changes how images are split into runs, never their labels (default: 128 in runs of 64).
    expect(onnx.runtime.forwardBatch).toBeGreaterThan(DEFAULT_BATCH);
    for (const size of [undefined, 7, 200]) expect(Array.from(await predictSet(onnx, V, v, size))).toEqual(Array.from(a));
    const viaImages = await onnx.runtime!.forwardImages(V.pixelsOf(3, 5), 5, v.dataSync() as Float32Array);
    const x = tf.tidy(() => tf.clipByValue(tf.add(V.batch([3, 4, 5, 6, 7]), v), 0, 255) as tf.Tensor4D);
    expect(maxRelativeDifference(viaImages, await onnx.runtime!.forward(batchOfTensor(x)))).toBeLessThan(1e-6);
    tf.dispose([v, x]);
    onnx.dispose();
    tfjs.dispose();
  });

  it('candidate gradient rows land in caller-provided shared memory; other memory is refused', async () => {
    const backend = await initBackend();
    const onnx = await loadClassifier('fashion', { backend });
    const x = tf.randomUniform([5, 28, 28, 1], 0, 255, 'float32', 4) as tf.Tensor4D;
    const cand = Int32Array.from({ length: 5 * 4 }, (_, i) => (i * 3) % 10);
    const reference = Int32Array.from([1, 2, 3, 4, 5]);
    const rows = await candidateGradients(onnx, batchOfTensor(x), cand, 4, { reference, maxRows: 8 }); // chunks of 2 images, run at once
    const loop = await candidateGradientsLoop(onnx, batchOfTensor(x), cand, 4, reference);
    expect(maxRelativeDifference(rows.rows, loop.rows)).toBeLessThan(1e-5);
    expect(maxRelativeDifference(rows.logits, loop.logits)).toBeLessThan(1e-5);
    await expect(onnx.runtime!.vjp(batchOfTensor(x), new Float32Array(5 * 10), new Float32Array(5 * 784))).rejects.toThrow(/shared memory/);
    x.dispose();
    onnx.dispose();
  });

  it('worker sessions are built on first use: a model ONNX Runtime refuses fails only when asked for, unless it is the first', async () => {
    const good = exportOnnx(selfCheckNet(), SELF_CHECK_SHAPE, ['forward']).forward;
    const bad = Uint8Array.of(8, 1, 18, 3, 98, 97, 100);
    const pool = await SessionPool.create(ModelFiles.of({ forward: good, vjp: bad }), 1, 1);
    try {
      const feeds = { x: { data: new Float32Array(2 * 48).fill(1), dims: [2, ...SELF_CHECK_SHAPE] } };
      const [out] = await pool.runShards('forward', [{ feeds }], ['logits']);
      expect(out.logits.length).toBe(2 * 3);
      await expect(pool.runShards('vjp', [{ feeds }], ['logits'])).rejects.toThrow(/^ONNX Runtime: /);
      const [again] = await pool.runShards('forward', [{ feeds }], ['logits']);
      expect(Array.from(again.logits)).toEqual(Array.from(out.logits));
    } finally {
      await pool.dispose();
    }
    await expect(SessionPool.create(ModelFiles.of({ vjp: bad }), 1, 1)).rejects.toThrow(/^ONNX Runtime: /);
  });

  it('the workers open the models by path: the files hold the bytes, weights go to one file once, and go with the pool', async () => {
    const models = { forward: exportOnnx(selfCheckNet(), SELF_CHECK_SHAPE, ['forward']).forward, other: Uint8Array.of(1, 2, 3) };
    const files = ModelFiles.of(models);
    expect(readFileSync(files.paths.forward).equals(Buffer.from(models.forward))).toBe(true);
    expect([...readFileSync(files.paths.other)]).toEqual([1, 2, 3]);
    // Each array is written once, at an aligned offset, whatever the number of models that place it.
    const a = Float32Array.from({ length: 300 }, (_, i) => i);
    const b = Float32Array.from({ length: 7 }, (_, i) => -i);
    const [pa, pb, again] = [files.place(a), files.place(b), files.place(a)];
    expect(again).toEqual(pa);
    expect(pb.offset % 64).toBe(0);
    expect(pb.offset).toBeGreaterThanOrEqual(pa.offset + pa.length);
    files.closeWeights();
    const bin = readFileSync(join(files.dir, pb.location));
    expect(Array.from(new Float32Array(bin.buffer.slice(bin.byteOffset + pb.offset, bin.byteOffset + pb.offset + pb.length)))).toEqual(
      Array.from(b),
    );
    expect(basename(files.dir).startsWith(`uap-graphs-${HOST}-${process.pid}-`)).toBe(true);
    files.release();
    files.release(); // twice is harmless
    expect(existsSync(files.dir)).toBe(false);
  });

  it("a folder left by a process that no longer runs is removed by the next one; a running process's stays", () => {
    const dead = mkdtempSync(join(tmpdir(), `uap-graphs-${HOST}-999999999-`));
    const alive = mkdtempSync(join(tmpdir(), `uap-graphs-${HOST}-${process.ppid}-`));
    // Another host's (a container sharing the folder): its process ids are not ours to test.
    const elsewhere = mkdtempSync(join(tmpdir(), `uap-graphs-${HOST}x-999999999-`));
    const files = new ModelFiles();
    try {
      expect(existsSync(dead)).toBe(false);
      expect(existsSync(alive)).toBe(true);
      expect(existsSync(elsewhere)).toBe(true);
    } finally {
      files.release();
      for (const d of [alive, elsewhere]) rmSync(d, { recursive: true, force: true });
    }
  });

  it("a model exported with its weights in the pool's file gives the logits and gradients of one with them inside", async () => {
    const net = selfCheckNet();
    const inside = await onnxRuntime(net, SELF_CHECK_SHAPE, { layout: { workers: 1, threadsPerWorker: 1 } });
    const files = new ModelFiles();
    exportOnnxEach(net, SELF_CHECK_SHAPE, ['forward', 'vjp'], 'cpu', (k, bytes) => files.add(k, bytes), files);
    files.closeWeights();
    // Graphs only in the models: every weight of 1 KB or more went to weights.bin.
    expect(statSync(files.paths.vjp).size).toBeLessThan(statSync(join(files.dir, 'weights.bin')).size);
    const pool = await SessionPool.create(files, 1, 1, 'cpu', { prepack: false });
    expect(pool.sharedModels()).toEqual([]);
    try {
      const x = Float32Array.from({ length: 2 * 48 }, (_, i) => (i * 37) % 255);
      const dy = Float32Array.from({ length: 2 * 3 }, (_, i) => i - 2);
      const [out] = await pool.runShards(
        'vjp',
        [{ feeds: { x: { data: x, dims: [2, ...SELF_CHECK_SHAPE] }, dy: { data: dy, dims: [2, 1, 3] } } }],
        ['logits', 'dx'],
      );
      const want = await inside!.vjp({ n: 2, shape: SELF_CHECK_SHAPE, data: x }, dy);
      expect(maxRelativeDifference(out.logits, want.logits)).toBeLessThan(1e-6);
      expect(maxRelativeDifference(out.dx, want.dx)).toBeLessThan(1e-6);
    } finally {
      await pool.dispose();
      await inside!.dispose();
    }
  });

  it('workers that open one optimised copy of each model give the outputs of workers that optimise their own', async () => {
    // The self-check net has every op's samples: any op ONNX Runtime saves and reads back wrongly shows here.
    const net = selfCheckNet();
    const own = await onnxRuntime(net, SELF_CHECK_SHAPE, { layout: { workers: 1, threadsPerWorker: 1 } });
    for (const prepack of [true, false]) {
      const files = new ModelFiles();
      exportOnnxEach(net, SELF_CHECK_SHAPE, ['forward', 'vjp'], 'cpu', (k, bytes) => files.add(k, bytes), files);
      files.closeWeights();
      const pool = await SessionPool.create(files, 2, 1, 'cpu', { prepack, shareOptimised: true });
      try {
        const x = Float32Array.from({ length: 4 * 48 }, (_, i) => (i * 37) % 255);
        const dy = Float32Array.from({ length: 4 * 3 }, (_, i) => i - 5);
        const shard = (i: number) => ({
          feeds: {
            x: { data: x.subarray(i * 96, (i + 1) * 96), dims: [2, ...SELF_CHECK_SHAPE] },
            dy: { data: dy.subarray(i * 6, (i + 1) * 6), dims: [2, 1, 3] },
          },
        });
        // Two shards at once: both workers ask for the gradient model together, one optimises it.
        const outs = await pool.runShards('vjp', [shard(0), shard(1)], ['logits', 'dx']);
        for (const name of ['forward', 'vjp']) expect(existsSync(join(files.dir, `${name}.opt.onnx`))).toBe(true);
        // Saved and read back: no worker fell back to optimising its own.
        expect(pool.sharedModels()).toEqual(['forward', 'vjp']);
        const want = await own!.vjp({ n: 4, shape: SELF_CHECK_SHAPE, data: x }, dy);
        expect(maxRelativeDifference(Float32Array.from([...outs[0].dx, ...outs[1].dx]), want.dx)).toBeLessThan(1e-6);
        expect(maxRelativeDifference(Float32Array.from([...outs[0].logits, ...outs[1].logits]), want.logits)).toBeLessThan(1e-6);
      } finally {
        await pool.dispose();
      }
    }
    await own!.dispose();
  });

  it("the optimised models point at one copy of the filters they share; each file's model gives the same outputs", async () => {
    const net = chainNet([{ op: conv(3, 64, 3, 1, 'same', 'relu') }, { op: conv(64, 64, 3, 2, 'valid') }], 3 * 3 * 64);
    const shape: [number, number, number] = [8, 8, 3];
    const own = await onnxRuntime(net, shape, { layout: { workers: 1, threadsPerWorker: 1 } });
    const files = new ModelFiles();
    exportOnnxEach(net, shape, ['forward', 'images', 'vjp'], 'cpu', (k, bytes) => files.add(k, bytes), files);
    files.closeWeights();
    const pool = await SessionPool.create(files, 2, 1, 'cpu', { prepack: false, shareOptimised: true });
    try {
      const x = Float32Array.from({ length: 2 * 192 }, (_, i) => (i * 37) % 255);
      const feed = { x: { data: x, dims: [2, ...shape] } };
      const dy = { data: Float32Array.from({ length: 8 }, (_, i) => i - 3), dims: [2, 1, 4] };
      const [forward] = await pool.runShards('forward', [{ feeds: feed }], ['logits']);
      const [images] = await pool.runShards(
        'images',
        [{ feeds: { pixels: { data: Uint8Array.from(x), dims: [2, ...shape] }, v: { data: new Float32Array(192), dims: shape } } }],
        ['logits'],
      );
      const [grad] = await pool.runShards('vjp', [{ feeds: { ...feed, dy } }], ['logits', 'dx']);
      expect(pool.sharedModels()).toEqual(['forward', 'images', 'vjp']);
      // Where each saved model's external initializers lie.
      const locations = (name: string) => {
        const m = onnxProto.onnx.ModelProto.decode(readFileSync(join(files.dir, `${name}.opt.onnx`)));
        return m.graph!.initializer!.flatMap((t) => (t.externalData ?? []).filter((e) => e.key === 'location').map((e) => e.value));
      };
      // The evaluation model's filters are the forward model's: its own file is gone.
      expect(locations('images').length).toBeGreaterThan(0);
      expect(new Set(locations('images'))).toEqual(new Set(['forward.opt.bin']));
      expect(existsSync(join(files.dir, 'images.opt.bin'))).toBe(false);
      // The gradient model's forward half shares them too.
      expect(locations('vjp')).toContain('forward.opt.bin');
      const want = await own!.vjp({ n: 2, shape, data: x }, dy.data);
      expect(maxRelativeDifference(forward.logits, want.logits)).toBeLessThan(1e-6);
      expect(maxRelativeDifference(images.logits, want.logits)).toBeLessThan(1e-6);
      expect(maxRelativeDifference(grad.logits, want.logits)).toBeLessThan(1e-6);
      expect(maxRelativeDifference(grad.dx, want.dx)).toBeLessThan(1e-6);
    } finally {
      await pool.dispose();
      await own!.dispose();
    }
  });

  it('the workers start with the forward and evaluation models; the gradient model only where it is alone', () => {
    expect(eagerModels(['forward', 'images', 'vjp'])).toEqual(['forward', 'images']);
    expect(eagerModels(['forward', 'vjp'])).toEqual(['forward']);
    expect(eagerModels(['vjp'])).toEqual(['vjp']);
  });

  it('eager models: each worker optimises a different one at start, and they still share one copy', async () => {
    const net = chainNet([{ op: conv(3, 64, 3, 1, 'same', 'relu') }, { op: conv(64, 64, 3, 2, 'valid') }], 3 * 3 * 64);
    const shape: [number, number, number] = [8, 8, 3];
    const files = new ModelFiles();
    exportOnnxEach(net, shape, ['forward', 'images', 'vjp'], 'cpu', (k, bytes) => files.add(k, bytes), files);
    files.closeWeights();
    const pool = await SessionPool.create(files, 2, 1, 'cpu', { prepack: false, shareOptimised: true, eager: ['forward', 'images'] });
    try {
      // Both built before the pool is ready; the gradient model waits for its first use.
      expect(pool.sharedModels()).toEqual(['forward', 'images']);
      expect(existsSync(join(files.dir, 'vjp.opt.onnx'))).toBe(false);
      // Whichever was saved second points at the first's file, and its own is gone.
      const kept = ['forward', 'images'].filter((n) => existsSync(join(files.dir, `${n}.opt.bin`)));
      expect(kept).toHaveLength(1);
      for (const name of ['forward', 'images']) {
        const m = onnxProto.onnx.ModelProto.decode(readFileSync(join(files.dir, `${name}.opt.onnx`)));
        const at = m.graph!.initializer!.flatMap((t) => (t.externalData ?? []).filter((e) => e.key === 'location').map((e) => e.value));
        expect(new Set(at)).toEqual(new Set([`${kept[0]}.opt.bin`]));
      }
    } finally {
      await pool.dispose();
    }
  });

  it('shareSavedInitializers points equal bytes at the earlier file, keeps what differs, removes a file no longer read', async () => {
    const ort = (await loadOrt())!;
    const dir = mkdtempSync(join(tmpdir(), 'uap-share-'));
    try {
      /** A store writing each array to `file` in `dir`. */
      const store = (file: string) => {
        const fd = openSync(join(dir, file), 'w');
        let end = 0;
        return {
          place(d: Float32Array) {
            writeSync(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength), 0, d.byteLength, end);
            end += d.byteLength;
            return { location: file, offset: end - d.byteLength, length: d.byteLength };
          },
          close: () => closeSync(fd),
        };
      };
      const w1 = Float32Array.from({ length: 64 * 64 }, (_, i) => Math.sin(i));
      const w2 = Float32Array.from({ length: 64 * 64 }, (_, i) => Math.cos(i));
      /** y = x W1 [W2]: each model's arrays in its own file. */
      const model = (name: string, both: boolean) => {
        const s = store(`${name}.bin`);
        const g = new OnnxGraph(s);
        const h = g.op('MatMul', ['x', g.floats(w1.slice(), [64, 64])]);
        g.opMulti(both ? 'MatMul' : 'Identity', both ? [h, g.floats(w2.slice(), [64, 64])] : [h], ['y']);
        writeFileSync(join(dir, `${name}.onnx`), g.encode([['x', [1, 64]]], [['y', [1, 64]]]));
        s.close();
        return join(dir, `${name}.onnx`);
      };
      const [a, b, c] = [model('a', false), model('b', true), model('c', false)];
      const x = new ort.Tensor(
        'float32',
        Float32Array.from({ length: 64 }, (_, i) => i / 64),
        [1, 64],
      );
      const run = async (file: string) => {
        const s = await ort.InferenceSession.create(file);
        const y = (await s.run({ x })).y.data as Float32Array;
        await s.release();
        return y;
      };
      const before = [await run(b), await run(c)];
      expect(shareSavedInitializers(a, [])).toBe(0);
      // b: W1 found in a.bin, W2 stays in b.bin.
      expect(shareSavedInitializers(b, [a])).toBe(w1.byteLength);
      expect(existsSync(join(dir, 'b.bin'))).toBe(true);
      // c: all of it in a.bin, its own file removed.
      expect(shareSavedInitializers(c, [a, b])).toBe(w1.byteLength);
      expect(existsSync(join(dir, 'c.bin'))).toBe(false);
      expect([...(await run(b))]).toEqual([...before[0]]);
      expect([...(await run(c))]).toEqual([...before[1]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('models share an optimised copy where convolution filters make most of their weights, not where dense layers do', () => {
    // Filters 3x3x3x64 + 3x3x64x64 (38,592 floats with biases) before a 576 x 4 dense layer: filters make most.
    const convs = chainNet([{ op: conv(3, 64, 3, 1, 'same') }, { op: conv(64, 64, 3, 2, 'valid') }], 3 * 3 * 64);
    expect(shareOptimised(convs, 2)).toBe(true);
    expect(shareOptimised(convs, 1)).toBe(false); // one worker: one session per model, nothing to share
    // A 3x3x3x4 filter before a 256 x 4 dense layer: the dense layer makes most.
    expect(shareOptimised(chainNet([{ op: conv(3, 4, 3, 1, 'same') }], 8 * 8 * 4), 2)).toBe(false);
  });

  it('a gradient scratch is reused from call to call (a smaller call too) and gives the same rows as fresh memory', async () => {
    const backend = await initBackend();
    const onnx = await loadClassifier('fashion', { backend });
    const x = tf.randomUniform([4, 28, 28, 1], 0, 255, 'float32', 5) as tf.Tensor4D;
    const x2 = x.slice([1], [2]) as tf.Tensor4D;
    const cand = Int32Array.from({ length: 4 * 3 }, (_, i) => (i * 7) % 10);
    const scratch: GradientScratch = {};
    const first = await candidateGradients(onnx, batchOfTensor(x), cand, 3, { scratch });
    const firstRows = first.rows.slice();
    const buffer = scratch.buffer;
    expect(buffer).toBeInstanceOf(SharedArrayBuffer);
    const second = await candidateGradients(onnx, batchOfTensor(x2), cand.subarray(3, 9), 3, { scratch });
    expect(scratch.buffer).toBe(buffer);
    expect(second.rows.buffer).toBe(buffer);
    expect(second.rows.length).toBe(2 * 3 * 784);
    expect(maxRelativeDifference(firstRows, (await candidateGradients(onnx, batchOfTensor(x), cand, 3)).rows)).toBe(0);
    expect(maxRelativeDifference(second.rows, (await candidateGradients(onnx, batchOfTensor(x2), cand.subarray(3, 9), 3)).rows)).toBe(0);
    tf.dispose([x, x2]);
    onnx.dispose();
  });
});

describe('TF.js wasm', () => {
  it('max pooling input gradient matches the cpu reference, overlapping windows included (the stock wasm MaxPoolGrad does not)', async () => {
    const x0 = tf.randomNormal([2, 7, 8, 3], 0, 1, 'float32', 3).arraySync();
    const cases: [number, number, 'same' | 'valid'][] = [
      [2, 2, 'same'],
      [2, 2, 'valid'],
      [3, 2, 'same'],
      [3, 2, 'valid'],
      [3, 1, 'same'],
      [2, 1, 'valid'],
    ];
    const run = ([k, st, padding]: [number, number, 'same' | 'valid'], ours: boolean) => {
      const x = tf.tensor(x0) as tf.Tensor4D;
      const probe = tf.randomNormal(tf.maxPool(x, k, st, padding).shape, 0, 1, 'float32', 4);
      const pool = (t: tf.Tensor) =>
        ours ? maxPoolInputGrad(t as tf.Tensor4D, [k, k], [st, st], padding) : tf.maxPool(t as tf.Tensor4D, k, st, padding);
      return tf
        .grad((t) => tf.sum(tf.mul(pool(t), probe)))(x)
        .dataSync();
    };
    await tf.setBackend('cpu');
    const refs = cases.map((c) => run(c, false)); // TF's own gradient on cpu
    cases.forEach((c, i) => expect(maxRelativeDifference(run(c, true), refs[i]), `cpu ${c.join(' ')}`).toBeLessThan(1e-6));
    expect((await initBackend('wasm')).name).toBe('wasm');
    cases.forEach((c, i) => expect(maxRelativeDifference(run(c, true), refs[i]), `wasm ${c.join(' ')}`).toBeLessThan(1e-5));
  });
});
