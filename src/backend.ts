import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from './errors.js';

export type BackendName = 'wasm' | 'cpu';

let wasmRegistered = false;

async function registerWasm(): Promise<void> {
  if (wasmRegistered) return;
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // The .wasm binaries ship inside the npm package: point TF.js at them (no network fetch).
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  wasm.setWasmPaths(join(dist, 'dist') + '/');
  wasmRegistered = true;
}

/**
 * Start-up self-check: the input gradient of a tiny conv net on the candidate backend must match
 * the pure-JS cpu reference, or the backend is not used.
 */
async function selfCheck(): Promise<boolean> {
  const run = () =>
    tf.tidy(() => {
      const x = tf.tensor4d(Array.from({ length: 2 * 5 * 5 * 2 }, (_, i) => Math.sin(i)), [2, 5, 5, 2]);
      const w = tf.tensor4d(Array.from({ length: 3 * 3 * 2 * 3 }, (_, i) => Math.cos(i)), [3, 3, 2, 3]);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.relu6(tf.conv2d(t as tf.Tensor4D, w, 2, 'same'))))(x);
      return Array.from(g.dataSync());
    });
  const candidate = run();
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  const reference = run();
  await tf.setBackend(prev);
  return candidate.every((v, i) => Math.abs(v - reference[i]) <= 1e-4 * (1 + Math.abs(reference[i])));
}

/**
 * Chooses the compute backend once per process: `name` when given, else the fastest that passes
 * the self-check (wasm with SIMD, then cpu). Returns the name in use.
 */
export async function initBackend(name?: string): Promise<BackendName> {
  // Production mode: skips per-op debug checks and the "install tfjs-node" banner (it cannot be installed offline).
  tf.enableProdMode();
  if (name !== undefined && name !== 'wasm' && name !== 'cpu')
    throw new UsageError(`--backend ${name}: expected wasm or cpu`);
  const want = (name as BackendName | undefined) ?? 'wasm';
  if (want === 'wasm') {
    try {
      await registerWasm();
      if ((await tf.setBackend('wasm')) && (await selfCheck())) return 'wasm';
    } catch {
      /* fall through to cpu */
    }
    if (name === 'wasm') throw new UsageError('--backend wasm: the wasm backend failed to start or failed its self-check');
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}
