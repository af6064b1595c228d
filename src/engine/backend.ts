import * as tf from '../tf.js';
import { createRequire } from 'node:module';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { selfCheckInputs, selfCheckNet, closeEnough, tfjsProbe, SELF_CHECK_SHAPE } from './selfcheck.js';
import { onnxRuntime, loadOrt, type Device } from './onnx/runtime.js';
import type { Runtime } from './runtime.js';
import { batchOfTensor } from './tfjs/batchTensor.js';

/**
 * Where models run. 'onnx': ONNX Runtime on the CPU for forward passes and input gradients of every
 * model the engine imports (TF.js on wasm for the small tensor work in between); 'webgpu': the same
 * graphs on ONNX Runtime's WebGPU provider (a GPU through Vulkan, Metal or D3D12); 'wasm' / 'cpu':
 * TF.js alone.
 */
export type BackendName = 'onnx' | 'webgpu' | 'wasm' | 'cpu';

const BACKENDS: readonly BackendName[] = ['onnx', 'webgpu', 'wasm', 'cpu'];

/**
 * Where models run, as initBackend chose it: handed to loadClassifier, which gives importable models
 * ONNX Runtime when `onnx` is true, else runs them on TF.js. (TF.js's own backend is one per process,
 * TF.js's rule: `tfjs` says which one was set.)
 */
export interface Backend {
  /** 'onnx', or the TF.js backend when ONNX Runtime is not used. */
  readonly name: BackendName;
  /** ONNX Runtime loaded and passed its self-check: importable models run on it. */
  readonly onnx: boolean;
  /** Where ONNX Runtime runs them: its CPU provider or its WebGPU provider. */
  readonly device: Device;
  /** The TF.js backend set for the process (the tensor work in between, and models ONNX cannot take). */
  readonly tfjs: 'wasm' | 'cpu';
}

/** TF.js alone, on the backend TF.js has now: models load without ONNX Runtime (a TF.js reference beside it, tests). */
export function tfjsBackend(): Backend {
  const tfjs = tf.getBackend() === 'wasm' ? 'wasm' : 'cpu';
  return { name: tfjs, onnx: false, device: 'cpu', tfjs };
}

async function registerWasm(): Promise<void> {
  // Idempotent: TF.js keeps one registry per process.
  if (tf.findBackendFactory('wasm')) return;
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries ship inside the npm package: point TF.js at them (no network fetch).
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  wasm.setWasmPaths(join(dist, 'dist') + '/');
}

/**
 * Runs `f` and removes the process-wide error handlers it added. The wasm backend's Emscripten module
 * installs uncaughtException / unhandledRejection handlers that rethrow, so any uncaught error of the
 * host application (a library user's own code, or the CLI's) ended as exit 7 with a stack pointing
 * into tf-backend-wasm.
 */
async function withoutNewProcessHandlers<T>(f: () => Promise<T>): Promise<T> {
  const events = ['uncaughtException', 'unhandledRejection'];
  const emitter = process as unknown as NodeJS.EventEmitter;
  const before = events.map((e) => new Set(emitter.listeners(e)));
  try {
    return await f();
  } finally {
    events.forEach((e, i) => {
      for (const l of emitter.listeners(e)) if (!before[i].has(l)) emitter.off(e, l as (...args: unknown[]) => void);
    });
  }
}

/** The pure-JS cpu reference of the self-check, computed once. */
let reference: { logits: number[]; dx: number[] } | undefined;
async function cpuReference(): Promise<{ logits: number[]; dx: number[] }> {
  if (!reference) {
    const prev = tf.getBackend();
    await tf.setBackend('cpu');
    reference = tfjsProbe();
    if (prev && prev !== 'cpu') await tf.setBackend(prev);
  }
  return reference;
}

/** The engine's own ops (custom gradients included) on the candidate TF.js backend vs the cpu reference. */
async function tfjsSelfCheck(): Promise<boolean> {
  const ref = await cpuReference();
  const got = tfjsProbe();
  return closeEnough(got.logits, ref.logits) && closeEnough(got.dx, ref.dx);
}

/**
 * ONNX Runtime loads on `device`, and its hand-built backward graph gives the cpu reference's logits
 * and gradients on the probe network (every op of the registry): null when it passes, else why not.
 */
async function onnxSelfCheck(device: Device): Promise<string | null> {
  const ref = await cpuReference();
  // One worker and the vjp model alone: the check is of the graphs, and starts take time.
  let rt: Runtime | null;
  try {
    rt = await onnxRuntime(selfCheckNet(), SELF_CHECK_SHAPE, { layout: { workers: 1, threadsPerWorker: 1 }, only: ['vjp'], device });
  } catch (e) {
    return firstLine(e);
  }
  if (!rt) return 'onnxruntime-node is not installed';
  const { x, dy } = selfCheckInputs();
  try {
    const r = await rt.vjp(batchOfTensor(x), dy);
    if (!closeEnough(r.logits, ref.logits) || !closeEnough(r.dx, ref.dx))
      return 'its logits or gradients differ from the reference on the probe network';
    return null;
  } catch (e) {
    return firstLine(e);
  } finally {
    x.dispose();
    await rt.dispose();
  }
}

/** An error's first line, without ONNX Runtime's source location and failed condition before its own words. */
const firstLine = (e: unknown) =>
  String((e as Error)?.message ?? e)
    .split('\n')[0]
    .replace(/^ONNX Runtime: \S+\.cc:\d+ .*? was false\. /, '');

/**
 * Whether this machine seems to have a GPU that WebGPU would drive in hardware: always on macOS and
 * Windows; on Linux, an NVIDIA device node or a DRM render node. Without one, Dawn can only find a
 * software Vulkan (Mesa's lavapipe), exact but slower than the CPU engine, so the default choice does
 * not try WebGPU there (`webgpu` asked for by name still runs on it).
 */
export function hardwareGpuLikely(platform = process.platform, dev = '/dev'): boolean {
  if (platform === 'darwin' || platform === 'win32') return true;
  if (platform !== 'linux') return false;
  if (existsSync(join(dev, 'nvidia0'))) return true;
  try {
    return readdirSync(join(dev, 'dri')).some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

/** Why the default choice did not take the GPU, for engineNotice (set by initBackend). */
let gpuFallback: string | undefined;

/**
 * Chooses where models run: `name` when given, else the fastest that passes its self-check (webgpu
 * where a hardware GPU seems present, then onnx, wasm, cpu). Sets TF.js's backend (one per process)
 * and returns the engine to load classifiers with (loadClassifier's `engine`). A backend asked for by
 * name that cannot start is a UsageError saying why.
 */
export async function initBackend(name?: string): Promise<Backend> {
  // Production mode: skips per-op debug checks and the "install tfjs-node" banner (it cannot be installed offline).
  tf.enableProdMode();
  if (name !== undefined && !BACKENDS.includes(name as BackendName))
    throw new UsageError(`{backend} ${name}: expected ${BACKENDS.join(', ')}`);
  let tfBackend: 'wasm' | 'cpu' = 'cpu';
  if (name !== 'cpu') {
    try {
      const started = await withoutNewProcessHandlers(async () => {
        await registerWasm();
        return (await tf.setBackend('wasm')) && (await tfjsSelfCheck());
      });
      if (started) tfBackend = 'wasm';
    } catch {
      /* fall through to cpu */
    }
    if (name === 'wasm' && tfBackend !== 'wasm')
      throw new UsageError('{backend} wasm: the wasm backend failed to start or failed its self-check');
  }
  if (tfBackend === 'cpu') {
    await tf.setBackend('cpu');
    await tf.ready();
  }
  gpuFallback = undefined;
  if (name === 'webgpu' || (name === undefined && hardwareGpuLikely())) {
    const why = (await loadOrt()) ? await onnxSelfCheck('webgpu') : `onnxruntime-node is not installed (${ORT_INSTALL})`;
    if (!why) return { name: 'webgpu', onnx: true, device: 'webgpu', tfjs: tfBackend };
    if (name === 'webgpu')
      throw new UsageError(`{backend} webgpu: ONNX Runtime's WebGPU provider cannot run here: ${why} (${GPU_DRIVER_HINT})`);
    gpuFallback = why;
  }
  const onnx = (name === undefined || name === 'onnx') && (await onnxSelfCheck('cpu')) === null;
  if (name === 'onnx' && !onnx)
    throw new UsageError(
      (await loadOrt())
        ? '{backend} onnx: ONNX Runtime failed its self-check'
        : `{backend} onnx: onnxruntime-node is not installed (${ORT_INSTALL})`,
    );
  return { name: onnx ? 'onnx' : tfBackend, onnx, device: 'cpu', tfjs: tfBackend };
}

/** What a GPU needs besides the package: a Vulkan driver on Linux; nothing on macOS (Metal) or Windows (D3D12). */
export const GPU_DRIVER_HINT =
  "on Linux WebGPU needs a Vulkan driver: the GPU vendor's, or Mesa 25 or later (Debian: mesa-vulkan-drivers from bookworm-backports) and libvulkan1";

/**
 * How to add the fast engine where `npm i uap` left it out (its optional install failed, e.g. offline from
 * NuGet): the variable skips onnxruntime-node's CUDA download, which uap never uses.
 */
export const ORT_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=skip npm i onnxruntime-node';

/**
 * A line for the user when the default choice fell back to TF.js because onnxruntime-node is absent
 * (not when the caller chose TF.js, nor when ONNX Runtime loaded but failed its self-check).
 */
export async function backendNotice(backend: Backend, requested?: string): Promise<string | undefined> {
  if (requested !== undefined) return undefined;
  if (gpuFallback && backend.device === 'cpu')
    return `a GPU seems present but ONNX Runtime's WebGPU provider did not start (${gpuFallback}), so models run on the CPU; ${GPU_DRIVER_HINT}`;
  if (backend.onnx || (await loadOrt())) return undefined;
  return `ONNX Runtime is not installed, so models run on TF.js (several times slower on ImageNet models); for the fast engine: ${ORT_INSTALL}`;
}
