import { spawn } from 'node:child_process';
import { resolve as resolvePath } from 'node:path';
import * as tf from '../src/tf.js';
import type { Classifier } from '../src/classifier/classifier.js';
import { tfjsRuntime } from '../src/engine/tfjs/tfjsRuntime.js';
import { ImageSet } from '../src/data/dataset.js';
import { Rng } from '../src/math/random.js';

// Production mode: no per-op debug checks, no tfjs-node banner.
tf.enableProdMode();

/** A classifier built by hand from its TF.js logits, run on TF.js (the maxBatch's gradient limit, when given, bounds its gradient passes). */
export function onTfjs(model: Omit<Classifier, 'runtime'>): Classifier {
  return { ...model, runtime: tfjsRuntime(model, model.maxBatch?.gradient) };
}

/** A linear classifier f(x) = W flat(x) + b: DeepFool has a closed form on it. */
export function linearClassifier(W: number[][], b: number[], shape: [number, number, number]): Classifier {
  const d = shape[0] * shape[1] * shape[2];
  const w = tf.tensor2d(W.flat(), [W.length, d]);
  const bias = tf.tensor1d(b);
  return onTfjs({
    name: 'linear',
    inputShape: shape,
    numClasses: W.length,
    labelSpace: 'own',
    logits: (x) => tf.tidy(() => tf.add(tf.matMul(x.reshape([x.shape[0], d]), w, false, true), bias) as tf.Tensor2D),
    dispose: () => tf.dispose([w, bias]),
  });
}

/** A small random ReLU network on [h,w,c] images with `k` classes (seeded). */
export function tinyNet(shape: [number, number, number], k: number, seed = 1): Classifier {
  const d = shape[0] * shape[1] * shape[2];
  const rng = new Rng(seed);
  const w1 = tf.tensor2d(
    Array.from({ length: d * 16 }, () => rng.normal() / Math.sqrt(d) / 40),
    [d, 16],
  );
  const w2 = tf.tensor2d(
    Array.from({ length: 16 * k }, () => rng.normal()),
    [16, k],
  );
  return onTfjs({
    name: 'tiny',
    inputShape: shape,
    numClasses: k,
    labelSpace: 'own',
    logits: (x) => tf.tidy(() => tf.matMul(tf.relu(tf.sub(tf.matMul(x.reshape([x.shape[0], d]), w1), 0.5)), w2) as tf.Tensor2D),
    dispose: () => tf.dispose([w1, w2]),
  });
}

/** n random uint8 images. */
export function randomImages(n: number, shape: [number, number, number], seed = 2): ImageSet {
  const rng = new Rng(seed);
  const px = Uint8Array.from({ length: n * shape[0] * shape[1] * shape[2] }, () => rng.int(256));
  return new ImageSet(
    shape,
    px,
    Array.from({ length: n }, (_, i) => ({ path: `img${i}` })),
  );
}

/** What a finished `uap` process left: as spawnSync's result, for the fields the tests read. */
export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI (`node dist/src/cli/main.js ...args`) WITHOUT blocking this process: spawnSync
 * froze the test worker's event loop for as long as the child ran (over 60 s on a loaded 2-core
 * machine), and vitest's worker then failed with 'Timeout calling "onTaskUpdate"'.
 */
export function uapCli(args: string[], opts: { env?: Record<string, string>; timeout?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { ...process.env, ...opts.env }, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 600_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ status, stdout, stderr });
    });
  });
}

export const CLI_PATH = resolvePath(import.meta.dirname, '..', 'dist', 'src', 'cli', 'main.js');
