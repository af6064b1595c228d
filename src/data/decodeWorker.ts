import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PROJECT_ROOT } from '../paths.js';

/**
 * Small PNGs decoded on a worker thread, a batch per message. Why: decoding on the main thread
 * competes with handing batches to ONNX Runtime's workers; with Fashion-MNIST's 28x28 images (the
 * model ~50 us per image), the workers waited on the main thread and only about 1.5 of 2 cores were
 * busy. Images it cannot decode (anything but a plain PNG of the model's size) come back as misses,
 * for sharp on the main thread to decode or to refuse with its reason.
 */

/** The worker loads the compiled PNG module; run from the TypeScript sources (the tests), the build's copy. */
function pngModule(): URL | undefined {
  const here = new URL('./png.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = join(PROJECT_ROOT, 'dist', 'src', 'data', 'png.js');
  return existsSync(built) ? pathToFileURL(built) : undefined;
}

/** Plain JS, run with `eval` (CommonJS): imports the PNG module and decodes each request's images in order. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.png).then(({ plainPng }) => {
  parentPort.on('message', ({ id, bytes, ends, shape: [h, w, c] }) => {
    const n = ends.length;
    const per = h * w * c;
    const pixels = new Uint8Array(n * per);
    const ok = new Uint8Array(n);
    let from = 0;
    for (let k = 0; k < n; k++) {
      const px = plainPng(Buffer.from(bytes.buffer, bytes.byteOffset + from, ends[k] - from), h, w, c);
      if (px) { pixels.set(px, k * per); ok[k] = 1; }
      from = ends[k];
    }
    parentPort.postMessage({ id, pixels, ok }, [pixels.buffer, ok.buffer]);
  });
});
`;

/** Decoded images of one request: `ok[k]` is 0 where image k is left to sharp. */
export interface DecodedPngs {
  pixels: Uint8Array;
  ok: Uint8Array;
}

/**
 * One decoding thread for the process, started on first use; referenced only while requests are out,
 * so that it never keeps the process alive.
 */
class PngWorker {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (d: DecodedPngs) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(png: URL) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { png: png.href } });
    this.worker.unref();
    this.worker.on('message', (m: DecodedPngs & { id: number }) => this.settle(m.id, (w) => w.resolve(m)));
    this.worker.on('error', (e) => this.failAll(e));
    this.worker.on('exit', () => this.failAll(new Error('the PNG decoding thread stopped')));
  }

  private settle(id: number, how: (w: { resolve: (d: DecodedPngs) => void; reject: (e: Error) => void }) => void): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.worker.unref();
    how(w);
  }

  private failAll(e: Error): void {
    worker = undefined; // the next request starts a new thread
    for (const id of [...this.waiting.keys()]) this.settle(id, (w) => w.reject(e));
  }

  decode(images: Uint8Array[], shape: [number, number, number]): Promise<DecodedPngs> {
    const ends = new Uint32Array(images.length);
    let total = 0;
    images.forEach((b, k) => (ends[k] = total += b.length));
    const bytes = new Uint8Array(total);
    images.forEach((b, k) => bytes.set(b, ends[k] - b.length));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, bytes, ends, shape }, [bytes.buffer, ends.buffer]);
    });
  }
}

let worker: PngWorker | undefined;
/** The PNG module the thread loads; null when there is none or the thread is turned off (found once). */
let png: URL | null | undefined;

/**
 * Decodes the PNGs of one batch off the main thread; undefined when no decoding thread can be started
 * (the PNG module is not built), and the caller decodes in place. UAP_DECODE_THREAD=0 turns it off.
 */
export function decodePngsOffThread(images: Uint8Array[], shape: [number, number, number]): Promise<DecodedPngs> | undefined {
  if (png === undefined) png = (process.env.UAP_DECODE_THREAD !== '0' && pngModule()) || null;
  if (!png) return undefined;
  worker ??= new PngWorker(png);
  return worker.decode(images, shape);
}
