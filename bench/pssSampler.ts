/**
 * The proportional set size (PSS: resident memory with each shared page counted once) of this process
 * and the processes it started (the load's reference run of the model file is one), sampled from a
 * worker thread, whose timer runs while the main thread is busy. Why PSS beside the kernel's
 * high-water mark (maxRSS): ONNX Runtime maps the weights file once per session, and RSS counts a page
 * once per mapping, so it counts the weights several times over though they sit in memory once; and
 * maxRSS leaves child processes out. Linux only (/proc); elsewhere every figure is undefined.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

const ROLLUP = '/proc/self/smaps_rollup';
const ROLE = 'uap-pss-sampler';

/** kB of PSS of one process; 0 for one that exited since it was listed. */
function processPssKB(pid: string): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The processes each thread of `pid` started. */
function childrenOf(pid: string): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(/\s+/).filter(Boolean),
    );
  } catch {
    return [];
  }
}

/** kB of PSS of `pid` and its descendants. */
function treePssKB(pid: string): number {
  let kB = 0;
  for (const queue = [pid]; queue.length;) {
    const p = queue.pop()!;
    kB += processPssKB(p);
    queue.push(...childrenOf(p));
  }
  return kB;
}

/** PSS of this process and its descendants now, MB (undefined off Linux). */
export function pssMB(): number | undefined {
  return existsSync(ROLLUP) ? treePssKB(String(process.pid)) / 1024 : undefined;
}

/** Samples PSS every `intervalMs` until `stop`, which returns the highest sample (MB). */
export function samplePss(intervalMs = 50): { stop(): Promise<number | undefined> } {
  if (!existsSync(ROLLUP)) return { stop: async () => undefined };
  const shared = new SharedArrayBuffer(4);
  // This module, run again as the sampling thread (below).
  const worker = new Worker(new URL(import.meta.url), { workerData: { role: ROLE, shared, intervalMs, pid: String(process.pid) } });
  return {
    async stop() {
      await worker.terminate();
      return Math.max(Atomics.load(new Int32Array(shared), 0) / 1024, pssMB() ?? 0);
    },
  };
}

const sampling = workerData as { role?: string; shared: SharedArrayBuffer; intervalMs: number; pid: string } | null;
if (!isMainThread && sampling?.role === ROLE) {
  const peak = new Int32Array(sampling.shared);
  setInterval(() => {
    const kB = treePssKB(sampling.pid);
    if (kB > Atomics.load(peak, 0)) Atomics.store(peak, 0, kB);
  }, sampling.intervalMs);
}
