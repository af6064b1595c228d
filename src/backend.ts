import * as tf from './tf.js';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.js';
import { selfCheckInputs, selfCheckNet, closeEnough, tfjsProbe, SELF_CHECK_SHAPE } from './model/selfcheck.js';
import { onnxRuntime, loadOrt } from './model/onnx/runtime.js';

/**
 * Where models run. 'onnx': ONNX Runtime for forward passes and input gradients of every model the
 * engine imports (TF.js on wasm for the small tensor work in between); 'wasm' / 'cpu': TF.js alone.
 */
export type BackendName = 'onnx' | 'wasm' | 'cpu';

/**
 * Where models run, as initBackend chose it: handed to loadClassifier, which gives importable models
 * ONNX Runtime when `onnx` is true, else runs them on TF.js. (TF.js's own backend is one per process,
 * TF.js's rule: `tfjs` says which one was set.)
 */
export interface Engine {
  /** 'onnx', or the TF.js backend when ONNX Runtime is not used. */
  readonly name: BackendName;
  /** ONNX Runtime loaded and passed its self-check: importable models run on it. */
  readonly onnx: boolean;
  /** The TF.js backend set for the process (the tensor work in between, and models ONNX cannot take). */
  readonly tfjs: 'wasm' | 'cpu';
}

/** TF.js alone, on the backend TF.js has now: models load without ONNX Runtime (a TF.js reference beside it, tests). */
export function tfjsEngine(): Engine {
  const tfjs = tf.getBackend() === 'wasm' ? 'wasm' : 'cpu';
  return { name: tfjs, onnx: false, tfjs };
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

/** ONNX Runtime loads, and its forward pass and hand-built backward graph match the cpu reference. */
async function onnxSelfCheck(): Promise<boolean> {
  const ref = await cpuReference();
  // One worker and the vjp model alone: the check is of the graphs, and starts take time.
  const rt = await onnxRuntime(selfCheckNet(), SELF_CHECK_SHAPE, { workers: 1, threadsPerWorker: 1 }, ['vjp']).catch(() => null);
  if (!rt) return false;
  const { x, dy } = selfCheckInputs();
  try {
    const r = await rt.vjp(x, dy);
    return closeEnough(r.logits, ref.logits) && closeEnough(r.dx, ref.dx);
  } catch {
    return false;
  } finally {
    x.dispose();
    await rt.dispose();
  }
}

/**
 * Chooses where models run: `name` when given, else the fastest that passes its self-check (onnx,
 * then wasm, then cpu). Sets TF.js's backend (one per process) and returns the engine to load
 * classifiers with (loadClassifier's `engine`).
 */
export async function initBackend(name?: string): Promise<Engine> {
  // Production mode: skips per-op debug checks and the "install tfjs-node" banner (it cannot be installed offline).
  tf.enableProdMode();
  if (name !== undefined && name !== 'onnx' && name !== 'wasm' && name !== 'cpu')
    throw new UsageError(`{backend} ${name}: expected onnx, wasm or cpu`);
  let tfBackend: 'wasm' | 'cpu' = 'cpu';
  if (name !== 'cpu') {
    try {
      await registerWasm();
      if ((await tf.setBackend('wasm')) && (await tfjsSelfCheck())) tfBackend = 'wasm';
    } catch {
      /* fall through to cpu */
    }
    if (name === 'wasm' && tfBackend !== 'wasm') throw new UsageError('{backend} wasm: the wasm backend failed to start or failed its self-check');
  }
  if (tfBackend === 'cpu') {
    await tf.setBackend('cpu');
    await tf.ready();
  }
  const onnx = (name === undefined || name === 'onnx') && (await onnxSelfCheck());
  if (name === 'onnx' && !onnx)
    throw new UsageError(
      (await loadOrt()) ? '{backend} onnx: ONNX Runtime failed its self-check' : `{backend} onnx: onnxruntime-node is not installed (${ORT_INSTALL})`,
    );
  return { name: onnx ? 'onnx' : tfBackend, onnx, tfjs: tfBackend };
}

/** How to add the fast engine: onnxruntime-node is an optional peer, so `npm i uap` never downloads it or its GPU libraries. */
export const ORT_INSTALL = 'npm i onnxruntime-node --onnxruntime-node-install=skip';

/**
 * A line for the user when the default choice fell back to TF.js because onnxruntime-node is absent
 * (not when the caller chose TF.js, nor when ONNX Runtime loaded but failed its self-check).
 */
export async function engineNotice(engine: Engine, requested?: string): Promise<string | undefined> {
  if (requested !== undefined || engine.onnx || (await loadOrt())) return undefined;
  return `ONNX Runtime is not installed, so models run on TF.js (several times slower on ImageNet models); for the fast engine: ${ORT_INSTALL}`;
}
