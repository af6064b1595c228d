import { availableParallelism, totalmem } from 'node:os';
import type { Net } from '../net.js';
import type { Runtime } from '../runtime.js';
import { exportOnnxEach } from './export.js';
import { ModelFiles } from './modelFiles.js';
import { detectNchwcBlock, nchwcBlock } from './nchwc.js';
import { inferShapes, multiplyAdds } from '../shapes.js';
import type { Device } from './emit.js';
import type { ImageShape } from '../../math/imageShape.js';

export type { Device };
import { SessionPool, type Feed } from './workerPool.js';

type Ort = typeof import('onnxruntime-node');
let ortModule: Promise<Ort | null> | undefined;

/**
 * onnxruntime-node, or null where it cannot load (another platform, a browser bundle); its blocked
 * layout's channel block is known once this resolves (nchwcBlock()).
 */
export function loadOrt(): Promise<Ort | null> {
  ortModule ??= import('onnxruntime-node').then(
    async (m) => {
      const ort = (m as { default?: Ort }).default?.InferenceSession ? (m as { default: Ort }).default : m;
      await detectNchwcBlock(ort);
      return ort;
    },
    () => null,
  );
  return ortModule;
}

/**
 * What one session run holds: at most ROWS_PER_RUN backward rows (images x cotangents) and
 * IMAGES_PER_RUN images. Small runs keep the activations in cache: on MobileNet-size models,
 * ten-candidate gradients are fastest per image in runs of one image, forward passes and single
 * gradients in runs of about 4 (docs/speed.md).
 */
const ROWS_PER_RUN = 10;
const IMAGES_PER_RUN = 4;
/**
 * Forward runs of a small model carry about RUN_MULTIPLY_ADDS of work (up to MAX_IMAGES_PER_RUN
 * images) instead: a run's fixed cost (a message each way, ONNX Runtime's call) outweighed 4 images of
 * the Fashion-MNIST CNN (1.1 M multiply-adds each), which scored 23k images/s in runs of 4 and 33k in
 * runs of 16 (clean + v, batches of 32, 2 workers); MobileNet v1 0.25 at 128 (14 M) gained 17% in runs
 * of 8, and at 224 (41 M) runs of 4 stay fastest.
 */
const RUN_MULTIPLY_ADDS = 1e8;
const MAX_IMAGES_PER_RUN = 64;

/**
 * On a GPU a run is sized by memory instead: about GPU_RUN_BYTES of activations (every value of the
 * forward graph, and one gradient of each per backward row), at most GPU_MAX_IMAGES_PER_RUN images
 * or rows. A GPU is busy only with runs of tens to hundreds of images, and one session serves the
 * device (no worker per core).
 */
const GPU_RUN_BYTES = 4 * 2 ** 30;
const GPU_MAX_IMAGES_PER_RUN = 256;

/** More workers than this gain little and each holds a copy of the model. */
const MAX_WORKERS = 4;

/**
 * Resident bytes one CPU worker may come to hold per byte of the model's weights: the sessions share
 * the weights file, but each keeps its own copy of the convolution filters in ONNX Runtime's blocked
 * layout (forward, evaluation and gradient sessions) unless they open a shared optimised copy
 * (shareOptimised), activations besides (bench:onnx's memory table, bench/results/onnx-memory.md).
 */
const WORKER_BYTES_PER_WEIGHT_BYTE = 5;
/**
 * Models with more weights than this run without ONNX Runtime's prepacked weights: prepacking copies
 * every matrix product's weights into each session (forward, evaluation and gradient models, in each
 * worker), where unpacked they stay in the weights file that all sessions map once. VGG-16's fully
 * connected layers packed cost about twice its weights per gradient session, and ConvNeXt-T's
 * pointwise layers a quarter of its peak, for a few per cent of speed (bench/results/onnx-memory.md);
 * small models (MobileNets) keep the speed.
 */
const PREPACK_MAX_WEIGHT_BYTES = 64 * 2 ** 20;
/** The share of the machine's memory the workers plan on (the main thread holds the model too). */
const WORKER_MEMORY_SHARE = 0.5;

export interface PoolLayout {
  workers: number;
  threadsPerWorker: number;
  /** Set where fewer workers than cores were chosen so that their sessions fit in memory. */
  fitsMemory?: true;
}

/**
 * One 1-thread worker per core up to MAX_WORKERS; the remaining cores become intra-op threads. Given
 * the model's weight bytes, no more workers than half the machine's memory holds (each has its own
 * sessions): a VGG-size model on an 8 GB laptop gets one worker with every core as its threads, which
 * is slower per gradient (ONNX Runtime's backward kernels thread poorly) but does not run out of memory.
 */
export function defaultLayout(cores = availableParallelism(), memory?: { weightBytes: number; totalBytes?: number }): PoolLayout {
  let workers = Math.max(1, Math.min(cores, MAX_WORKERS));
  let fitsMemory = false;
  if (memory && memory.weightBytes > 0) {
    const fit = Math.floor((WORKER_MEMORY_SHARE * (memory.totalBytes ?? totalmem())) / (WORKER_BYTES_PER_WEIGHT_BYTE * memory.weightBytes));
    if (fit < workers) [workers, fitsMemory] = [Math.max(1, fit), true];
  }
  return { workers, threadsPerWorker: Math.max(1, Math.floor(cores / workers)), ...(fitsMemory ? { fitsMemory: true as const } : {}) };
}

/** Bytes of a network's weights: every array its nodes hold, nested ones too (a binary op's constant). */
export function weightBytes(net: Net, which: (kind: string) => boolean = () => true): number {
  const bytes = (v: unknown): number => {
    if (!v || typeof v !== 'object') return 0;
    const data = (v as { data?: unknown }).data;
    return data instanceof Float32Array ? data.byteLength : Object.values(v).reduce((sum: number, x) => sum + bytes(x), 0);
  };
  return net.nodes.reduce((sum, n) => sum + (which(n.op.kind) ? bytes(n.op) : 0), 0);
}

/**
 * Whether the workers should open one optimised copy of each model (SessionSettings.shareOptimised):
 * where convolution filters make most of the weights. Each session keeps its own copy of them in
 * ONNX Runtime's blocked layout, which sharing saves once per worker and model; but each saved model
 * holds all of its weights, so the models no longer share the others (fully connected layers) through
 * the one weights file, which costs more than it saves where those dominate (VGG).
 */
export function shareOptimised(net: Net | NetFacts, workers: number): boolean {
  const facts = 'nodes' in net ? { weightBytes: weightBytes(net), convWeightBytes: weightBytes(net, (kind) => kind === 'conv') } : net;
  return workers > 1 && 2 * facts.convWeightBytes >= facts.weightBytes;
}

/**
 * The models the workers build at start: the forward and evaluation models, which every load's probe
 * runs; the gradient model on first use (an evaluation never needs it), unless it is the only one.
 */
export function eagerModels(models: string[]): string[] {
  const eager = models.filter((k) => k !== 'vjp');
  return eager.length ? eager : models.slice(0, 1);
}

/** Images per forward run for a model of `multiplyAdds` per image: IMAGES_PER_RUN, more for small models. */
export function forwardImagesPerRun(multiplyAdds: number): number {
  return Math.max(IMAGES_PER_RUN, Math.min(MAX_IMAGES_PER_RUN, Math.round(RUN_MULTIPLY_ADDS / Math.max(1, multiplyAdds))));
}

/** [start, end) of `parts` near-equal contiguous shares of `n` items (no empty share when parts <= n). */
export function shares(n: number, parts: number): [number, number][] {
  return Array.from({ length: parts }, (_, i) => [Math.floor((i * n) / parts), Math.floor(((i + 1) * n) / parts)] as [number, number]);
}

/** Float32 values of all of a network's activations (its input and every node's output) for one image. */
export function activationsPerImage(net: Net, inputShape: number[]): number {
  let total = 0;
  for (const shape of inferShapes(net, inputShape).values()) total += shape.reduce((a, b) => a * b, 1);
  return total;
}

/** Images per forward run and backward rows per vjp run on a GPU, for a model of `activations` values per image. */
export function gpuRunSizes(activations: number): { images: number; rows: number } {
  const fit = (bytes: number) => Math.max(1, Math.min(GPU_MAX_IMAGES_PER_RUN, Math.floor(GPU_RUN_BYTES / bytes)));
  return { images: fit(4 * activations), rows: fit(8 * activations) };
}

export interface OnnxRuntimeOptions {
  /** Worker threads and their intra-op threads on the CPU (default: defaultLayout()); a GPU gets one session. */
  layout?: PoolLayout;
  /** Just these models (the others are not exported). */
  only?: ('forward' | 'images' | 'vjp')[];
  /** Where the sessions run (default 'cpu'). */
  device?: Device;
  /**
   * How calls are cut on the CPU (default ROWS_PER_RUN backward rows, IMAGES_PER_RUN images per
   * gradient run): for measuring other cuts (`npm run bench:cuts`), not a user setting.
   */
  cuts?: { rowsPerRun?: number; imagesPerRun?: number };
  /** The folder the models' files are written in (default: the system's temporary folder; see ModelFiles). */
  filesIn?: string;
}

/**
 * ONNX Runtime for `net`: the forward, evaluation and vector-Jacobian models, in a pool of worker
 * threads (one on a GPU, which serves the whole device). Each call is cut into runs of whole images
 * that the workers take in turn; a vjp call with fewer images than workers is split by cotangents
 * instead (every worker runs the forward pass of all images, a cheap part).
 */
export async function onnxRuntime(net: Net, inputShape: ImageShape, options: OnnxRuntimeOptions = {}): Promise<Runtime | null> {
  if (!(await loadOrt())) return null;
  return startRuntime(exportRuntime(net, inputShape, options));
}

/**
 * What the runtime's settings depend on of a network (its size and work per image), measured at export:
 * what an export kept between loads (exportCache.ts) stores beside its models, so that a later load
 * starts the workers without the Net.
 */
export interface NetFacts {
  /** Output classes. */
  classes: number;
  weightBytes: number;
  /** Bytes of the convolution filters among them. */
  convWeightBytes: number;
  multiplyAdds: number;
  /** Float32 values of all activations per image (GPU run sizes). */
  activations: number;
}

/**
 * What the workers need of a network, exported (its models written to files) and measured: all that
 * starting its runtime takes, without the Net, which the caller may then let go before the workers
 * build their sessions (a large model's weights need not be in memory twice while they do).
 */
export interface ExportedRuntime {
  files: ModelFiles;
  inputShape: ImageShape;
  device: Device;
  layout: PoolLayout;
  facts: NetFacts;
  prepack: boolean;
  shareOptimised: boolean;
  forwardRun: number;
  rowsPerRun: number;
  imagesPerRun: number;
}

/** `net`'s models written for the workers, and the settings they run with (the synchronous half of onnxRuntime). */
export function exportRuntime(net: Net, inputShape: ImageShape, options: OnnxRuntimeOptions = {}): ExportedRuntime {
  const { only, device = 'cpu' } = options;
  // Each model goes to its file as soon as it is written, its weights to the one weights file.
  const files = new ModelFiles(options.filesIn);
  let classes: number;
  try {
    // In this order: the first is the session every worker builds at once.
    const kinds = (['forward', 'images', 'vjp'] as const).filter((k) => !only || only.includes(k));
    classes = exportOnnxEach(net, inputShape, kinds, device, (kind, bytes) => files.add(kind, bytes), files, nchwcBlock());
    files.closeWeights();
  } catch (e) {
    files.release();
    throw e;
  }
  const facts: NetFacts = {
    classes,
    weightBytes: weightBytes(net),
    convWeightBytes: weightBytes(net, (kind) => kind === 'conv'),
    multiplyAdds: multiplyAdds(net, inputShape),
    activations: activationsPerImage(net, inputShape),
  };
  return runtimeSettings(files, facts, inputShape, options);
}

/** The settings the workers run an exported network with, from its facts (an export of this load or one kept from an earlier load). */
export function runtimeSettings(
  files: ModelFiles,
  facts: NetFacts,
  inputShape: ImageShape,
  options: OnnxRuntimeOptions = {},
): ExportedRuntime {
  const { device = 'cpu' } = options;
  const gpu = device === 'webgpu';
  const layout: PoolLayout = gpu
    ? { workers: 1, threadsPerWorker: 1 }
    : (options.layout ?? defaultLayout(undefined, { weightBytes: facts.weightBytes }));
  const onGpu = gpu ? gpuRunSizes(facts.activations) : undefined;
  return {
    files,
    inputShape,
    device,
    layout,
    facts,
    prepack: facts.weightBytes <= PREPACK_MAX_WEIGHT_BYTES,
    shareOptimised: !gpu && shareOptimised(facts, layout.workers),
    forwardRun: onGpu?.images ?? forwardImagesPerRun(facts.multiplyAdds),
    rowsPerRun: onGpu?.rows ?? options.cuts?.rowsPerRun ?? ROWS_PER_RUN,
    imagesPerRun: onGpu?.images ?? options.cuts?.imagesPerRun ?? IMAGES_PER_RUN,
  };
}

/**
 * The workers for an exported network, once each has built its first session (the asynchronous half of
 * onnxRuntime); `onOptimised` hears of each model whose optimised copy the workers share once it is ready.
 */
export async function startRuntime(exported: ExportedRuntime, onOptimised?: (model: string) => void): Promise<Runtime> {
  const { files, inputShape, device, layout, forwardRun, rowsPerRun, imagesPerRun } = exported;
  const C = exported.facts.classes;
  const gpu = device === 'webgpu';
  const pool = await SessionPool.create(files, layout.workers, layout.threadsPerWorker, device, {
    prepack: exported.prepack,
    shareOptimised: exported.shareOptimised,
    eager: eagerModels(Object.keys(files.paths)),
    onOptimised,
  });
  /** Values per image. */
  const size = inputShape[0] * inputShape[1] * inputShape[2];
  /** Runs of whole images for n images of `rows` backward rows each (0: forward only). */
  const imageRuns = (n: number, rows: number) =>
    shares(n, Math.min(n, Math.max(Math.ceil((n * rows) / rowsPerRun), Math.ceil(n / (rows ? imagesPerRun : forwardRun)), pool.size)));
  const imageFeed = <T extends Float32Array | Uint8Array>(x: T, a: number, b: number): Feed => ({
    data: x.subarray(a * size, b * size),
    dims: [b - a, ...inputShape],
  });
  const concat = (parts: Float32Array[]) => {
    const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  };
  return {
    name: gpu ? 'onnxruntime-webgpu' : 'onnxruntime',
    sharedRows: true,
    layout: gpu
      ? `WebGPU, runs of up to ${forwardRun} images / ${rowsPerRun} gradient rows`
      : `${pool.size} worker${pool.size > 1 ? 's' : ''} x ${pool.threadsPerWorker} thread${pool.threadsPerWorker > 1 ? 's' : ''}` +
        (layout.fitsMemory ? ', fewer workers than cores so that their copies of the model fit in memory' : ''),
    // Per call: enough runs to keep every worker busy twice over (one run on a GPU); memory stays per run.
    maxRows: gpu ? rowsPerRun : 2 * rowsPerRun * pool.size,
    forwardBatch: forwardRun * pool.size,
    async forward(x) {
      const out = await pool.runShards(
        'forward',
        imageRuns(x.n, 0).map(([a, b]) => ({ feeds: { x: imageFeed(x.data, a, b) } })),
        ['logits'],
      );
      return concat(out.map((o) => o.logits));
    },
    async forwardImages(pixels, n, v) {
      const perturbation = v ?? new Float32Array(size);
      const out = await pool.runShards(
        'images',
        imageRuns(n, 0).map(([a, b]) => ({
          feeds: { pixels: imageFeed(pixels, a, b), v: { data: perturbation, dims: inputShape } },
        })),
        ['logits'],
      );
      return concat(out.map((o) => o.logits));
    },
    async vjp(x, dy, into) {
      const n = x.n;
      const k = dy.length / (n * C);
      // dx [n, k, H, W, C] in shared memory: each run copies its rows straight into place.
      if (into && !(into.buffer instanceof SharedArrayBuffer && into.length === n * k * size))
        throw new Error('internal: vjp output must be shared memory of the size of dx');
      const dx = into ?? new Float32Array(new SharedArrayBuffer(n * k * size * 4));
      if (n >= pool.size || k === 1) {
        const out = await pool.runShards(
          'vjp',
          imageRuns(n, k).map(([a, b]) => ({
            feeds: { x: imageFeed(x.data, a, b), dy: { data: dy.subarray(a * k * C, b * k * C), dims: [b - a, k, C] } },
            into: { dx: [dx.subarray(a * k * size, b * k * size)] },
          })),
          ['logits'],
        );
        return { logits: concat(out.map((o) => o.logits)), dx };
      }
      // Fewer images than workers: each run takes a share of every image's cotangents.
      const runs = shares(k, Math.min(k, pool.size));
      const out = await pool.runShards(
        'vjp',
        runs.map(([a, b]) => {
          const share = new Float32Array(n * (b - a) * C);
          for (let i = 0; i < n; i++) share.set(dy.subarray((i * k + a) * C, (i * k + b) * C), i * (b - a) * C);
          const rows = Array.from({ length: n }, (_, i) => dx.subarray((i * k + a) * size, (i * k + b) * size));
          return { feeds: { x: imageFeed(x.data, 0, n), dy: { data: share, dims: [n, b - a, C] } }, into: { dx: rows } };
        }),
        ['logits'],
      );
      return { logits: out[0].logits, dx };
    },
    dispose: () => pool.dispose(),
  };
}
