import * as tf from '../tf.js';
import type { Net, NetNode, NodeOp } from './net.js';
import { netToTfGraph } from './tfjs/tfjsNet.js';
import { runPlainGraph } from './tfjs/plainGraph.js';
import { OPS } from './ops/registry.js';
import { sampleWeights, size, type Sample, type Shape } from './ops/types.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * Networks built from the op registry's samples. `sampleNet` wraps one sample so that its inputs come
 * from one flat input value (per-op tests); `selfCheckNet` joins every sample of every op as branches
 * of one network that runtimes and backends must differentiate exactly like the cpu reference before
 * they are used. A new op's samples are in both without further edits.
 */

type AnySample = Sample<NodeOp>;

/** Every sample of every op, with its op's kind in the name. */
export function allSamples(): { kind: string; sample: AnySample }[] {
  return Object.values(OPS).flatMap((def) => (def.samples as AnySample[]).map((sample) => ({ kind: def.kind, sample })));
}

/**
 * Nodes that turn a flat value `from` (of `fromSize` entries) into the sample's inputs: input i is a
 * dense projection squashed into the sample's range (lo + (hi - lo) * sigmoid), reshaped.
 */
function inputsFrom(
  prefix: string,
  from: string,
  fromSize: number,
  sample: AnySample,
  seed: number,
  nchw = false,
): { nodes: NetNode[]; names: string[] } {
  const [lo, hi] = sample.range ?? [-2, 2];
  const nodes: NetNode[] = [];
  const names = sample.inputs.map((shape, i) => {
    const p = `${prefix}/in${i}`;
    nodes.push(
      {
        name: `${p}/proj`,
        inputs: [from],
        op: { kind: 'dense', kernel: sampleWeights([fromSize, size(shape)], seed + i, 0.05), act: 'sigmoid' },
      },
      {
        name: `${p}/scaled`,
        inputs: [`${p}/proj`],
        op: {
          kind: 'binary',
          op: 'mul',
          act: 'linear',
          constant: { weights: { data: Float32Array.of(hi - lo), shape: [1] }, first: false },
        },
      },
      {
        name: `${p}/range`,
        inputs: [`${p}/scaled`],
        op: { kind: 'binary', op: 'add', act: 'linear', constant: { weights: { data: Float32Array.of(lo), shape: [1] }, first: false } },
      },
      { name: p, inputs: [`${p}/range`], op: { kind: 'reshape', shape } },
    );
    if (!nchw || shape.length !== 3) return p;
    // An identity 1x1 convolution: the ONNX export stores its output as NCHW, so the op's own NCHW
    // code path is the one tested.
    const c = shape[2];
    const kernel = { data: Float32Array.from({ length: c * c }, (_, t) => (t % (c + 1) === 0 ? 1 : 0)), shape: [1, 1, c, c] };
    nodes.push({
      name: `${p}/nchw`,
      inputs: [p],
      op: { kind: 'conv', kernel, strides: [1, 1], padding: 'valid', group: 1, act: 'linear' },
    });
    return `${p}/nchw`;
  });
  return { nodes, names };
}

/** The image every sample network takes. */
export const SAMPLE_INPUT: ImageShape = [2, 3, 4];

/**
 * One sample as a network on a SAMPLE_INPUT image: the sample's inputs projected from it, the op, and
 * the op's output flattened and joined with the flat input itself (so that every sample, a
 * constant's too, has a gradient path). `nchw`: image-shaped inputs come out of a convolution, so
 * that an ONNX export hands them to the op in NCHW storage.
 */
export function sampleNet(sample: AnySample, nchw = false): Net {
  const flat: NetNode = { name: 'flat', inputs: ['x'], op: { kind: 'reshape', shape: [-1] } };
  const { nodes, names } = inputsFrom('s', 'flat', size(SAMPLE_INPUT), sample, 1, nchw);
  nodes.unshift(flat);
  nodes.push(
    { name: 'op', inputs: names, op: sample.op },
    { name: 'op/flat', inputs: ['op'], op: { kind: 'reshape', shape: [-1] } },
    { name: 'out', inputs: ['op/flat', 'flat'], op: { kind: 'concat', axis: -1, act: 'linear' } },
  );
  return { input: 'x', nodes, output: 'out' };
}

export const SELF_CHECK_SHAPE: ImageShape = [4, 4, 3];
const SELF_CHECK_CLASSES = 3;

/**
 * The samples the start-up self-check runs: the first of each op, and one per activation (each is its
 * own code path in every runtime). All of them would make every start several times slower; the
 * per-op tests run every sample.
 */
function selfCheckSamples(): { kind: string; sample: AnySample }[] {
  const seen = new Set<string>();
  return allSamples().filter(({ kind, sample }) => {
    const key = kind === 'act' ? `act ${JSON.stringify((sample.op as { act: unknown }).act)}` : kind;
    if (sample.check) return true;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The self-check samples as branches from one image input: projected inputs, the op, a dense head to
 * SELF_CHECK_CLASSES logits; the logits are the sum of all heads.
 */
export function selfCheckNet(): Net {
  const inputSize = size(SELF_CHECK_SHAPE);
  const nodes: NetNode[] = [{ name: 'flat', inputs: ['x'], op: { kind: 'reshape', shape: [-1] } }];
  const heads: string[] = [];
  selfCheckSamples().forEach(({ kind, sample }, b) => {
    const p = `b${b}_${kind}`;
    const { nodes: ins, names } = inputsFrom(p, 'flat', inputSize, sample, 10 * b);
    const out: Shape = (OPS[sample.op.kind].shape as (op: NodeOp, xs: Shape[]) => Shape)(sample.op, sample.inputs);
    nodes.push(
      ...ins,
      { name: `${p}/op`, inputs: names, op: sample.op },
      { name: `${p}/flat`, inputs: [`${p}/op`], op: { kind: 'reshape', shape: [-1] } },
      {
        name: `${p}/head`,
        inputs: [`${p}/flat`],
        op: { kind: 'dense', kernel: sampleWeights([size(out), SELF_CHECK_CLASSES], b + 7, 0.3), act: 'linear' },
      },
    );
    heads.push(`${p}/head`);
  });
  nodes.push({ name: 'logits', inputs: heads, op: { kind: 'binary', op: 'add', act: 'linear' } });
  return { input: 'x', nodes, output: 'logits' };
}

/** The probe batch (2 images) and cotangent used by every self-check. */
export function selfCheckInputs(): { x: tf.Tensor4D; dy: Float32Array } {
  const [h, w, c] = SELF_CHECK_SHAPE;
  const x = tf.tensor4d(
    Float32Array.from({ length: 2 * h * w * c }, (_, i) => 3 * Math.sin(i * 0.37) + Math.cos(i * 1.7)),
    [2, h, w, c],
  );
  return { x, dy: Float32Array.from({ length: 2 * SELF_CHECK_CLASSES }, (_, i) => Math.cos(i * 1.3) * 2) };
}

/** ||a - b||_2 / ||b||_2: one rounding-level flip (a max-pool argmax, a ReLU kink) moves it little. */
export function l2RelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sq = 0;
  let diff = 0;
  for (let i = 0; i < b.length; i++) {
    sq += b[i] * b[i];
    diff += (a[i] - b[i]) ** 2;
  }
  return a.length === b.length ? Math.sqrt(diff / Math.max(sq, 1e-30)) : Infinity;
}

/** max |a - b| / max |b|: the error measure of every gradient comparison in the project. */
export function maxRelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return a.length === b.length ? diff / Math.max(scale, 1e-12) : Infinity;
}

export function closeEnough(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4): boolean {
  return maxRelativeDifference(a, b) <= tol;
}

/** Logits and the input gradient of sum(dy * logits) of `net` on the current TF.js backend. */
export function tfjsVjp(net: Net, inputShape: Shape, x: tf.Tensor, dy: Float32Array): { logits: number[]; dx: number[] } {
  const g = netToTfGraph(net, inputShape);
  try {
    return tf.tidy(() => {
      let logits: number[] = [];
      const dx = tf.grad((t: tf.Tensor) => {
        const y = runPlainGraph(g, t);
        logits = Array.from(y.dataSync());
        return tf.sum(tf.mul(y, tf.tensor(dy, y.shape)));
      })(x);
      return { logits, dx: Array.from(dx.dataSync()) };
    });
  } finally {
    tf.dispose(g.owned);
  }
}

/** The self-check network's logits and input gradient on the current TF.js backend. */
export function tfjsProbe(): { logits: number[]; dx: number[] } {
  const { x, dy } = selfCheckInputs();
  try {
    return tfjsVjp(selfCheckNet(), SELF_CHECK_SHAPE, x, dy);
  } finally {
    x.dispose();
  }
}
