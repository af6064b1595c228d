/**
 * The process's proportional set size (PSS: resident memory with each shared page counted once)
 * sampled from a worker thread, whose timer runs while the main thread is busy. Why PSS beside the
 * kernel's high-water mark (maxRSS): ONNX Runtime maps the weights file once per session, and RSS
 * counts a page once per mapping, so it counts the weights several times over though they sit in
 * memory once. Linux only (/proc/self/smaps_rollup); elsewhere every figure is undefined.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const ROLLUP = '/proc/self/smaps_rollup';

/** PSS now, MB (undefined off Linux). */
export function pssMB(): number | undefined {
  if (!existsSync(ROLLUP)) return undefined;
  const kB = /^Pss:\s+(\d+) kB/m.exec(readFileSync(ROLLUP, 'utf8'))?.[1];
  return kB === undefined ? undefined : Number(kB) / 1024;
}

const SAMPLER = `
const { workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const peak = new Int32Array(workerData.shared);
setInterval(() => {
  const kB = Number(/^Pss:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]);
  if (kB > Atomics.load(peak, 0)) Atomics.store(peak, 0, kB);
}, workerData.intervalMs);
`;

/** Samples PSS every `intervalMs` until `stop`, which returns the highest sample (MB). */
export function samplePss(intervalMs = 50): { stop(): Promise<number | undefined> } {
  if (!existsSync(ROLLUP)) return { stop: async () => undefined };
  const shared = new SharedArrayBuffer(4);
  const worker = new Worker(SAMPLER, { eval: true, workerData: { shared, intervalMs } });
  return {
    async stop() {
      await worker.terminate();
      return Math.max(Atomics.load(new Int32Array(shared), 0) / 1024, pssMB() ?? 0);
    },
  };
}
