import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PROJECT_ROOT } from '../paths.js';
import type { DecodeReply, DecodeRequest } from './decodeBatch.js';
import type { ImageItem } from './source.js';
import { readSpans } from './tar.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * Batches of images read and, where they are small PNGs, decoded on a worker thread, a batch per
 * message (decodeBatch.ts). Why: reading and decoding on the main thread compete with handing batches
 * to ONNX Runtime's workers; with Fashion-MNIST's 28x28 images (the model ~50 us per image), the
 * workers waited on the main thread and only about 1.5 of 2 cores were busy. Images it cannot decode
 * (anything but a plain PNG of the model's size) come back undecoded with their bytes, for sharp on
 * the main thread to decode or to refuse with its reason.
 */

/** The worker loads the compiled batch module; run from the TypeScript sources (the tests), the build's copy. */
function batchModule(): URL | undefined {
  const here = new URL('./decodeBatch.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = join(PROJECT_ROOT, 'dist', 'src', 'data', 'decodeBatch.js');
  return existsSync(built) ? pathToFileURL(built) : undefined;
}

/** Plain JS, run with `eval` (CommonJS): imports the batch module and answers each request in turn. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const whole = (a) => a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
import(workerData.module).then(({ readAndDecode }) => {
  parentPort.on('message', ({ id, request }) => {
    const reply = readAndDecode(request);
    const owned = [reply.pixels, reply.ok, ...reply.bytes.filter((b) => b && whole(b))];
    parentPort.postMessage({ id, reply }, owned.map((a) => a.buffer));
  });
});
`;

/** A batch from the thread: `decoded(k)` says whether image k is in `pixels`; `bytes(k)` its file's bytes where it is not (undefined: not read). */
export interface ThreadBatch {
  pixels: Uint8Array;
  decoded(k: number): boolean;
  bytes(k: number): Buffer | undefined;
}

/**
 * One decoding thread for the process, started on first use; referenced only while requests are out,
 * so that it never keeps the process alive.
 */
class DecodingThread {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (d: DecodeReply) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(module: URL) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: module.href } });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; reply: DecodeReply }) => this.settle(m.id, (w) => w.resolve(m.reply)));
    this.worker.on('error', (e) => this.failAll(e));
    this.worker.on('exit', () => this.failAll(new Error('the image decoding thread stopped')));
  }

  private settle(id: number, how: (w: { resolve: (d: DecodeReply) => void; reject: (e: Error) => void }) => void): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.worker.unref();
    how(w);
  }

  private failAll(e: Error): void {
    thread = undefined; // the next request starts a new thread
    for (const id of [...this.waiting.keys()]) this.settle(id, (w) => w.reject(e));
  }

  run(request: DecodeRequest): Promise<DecodeReply> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, request });
    });
  }
}

/** The request for `items`: tar members read span by span (readSpans), files whole. */
function requestFor(items: ImageItem[], shape: ImageShape): DecodeRequest {
  const spans = readSpans(items.flatMap((it) => (it.member ? [{ file: it.path, member: it.member }] : [])));
  const where = new Map(spans.flatMap((s, i) => s.members.map((m) => [m, { span: i, offset: m.offset - s.start, size: m.size }] as const)));
  const images = items.map((it) => {
    if (it.member) return where.get(it.member)!;
    spans.push({ file: it.path, start: 0, length: -1, members: [] });
    return { span: spans.length - 1, offset: 0, size: -1 };
  });
  return { shape, spans: spans.map(({ file, start, length }) => ({ file, start, length })), images };
}

let thread: DecodingThread | undefined;
/** The module the thread loads; null when there is none or the thread is turned off (found once). */
let module: URL | null | undefined;

/**
 * Reads the images `items` and decodes the small PNGs among them off the main thread; undefined when
 * no decoding thread can be started (the module is not built), and the caller reads and decodes in
 * place. UAP_DECODE_THREAD=0 turns it off.
 */
export function decodeOffThread(items: ImageItem[], shape: ImageShape): Promise<ThreadBatch> | undefined {
  if (module === undefined) module = (process.env.UAP_DECODE_THREAD !== '0' && batchModule()) || null;
  if (!module) return undefined;
  thread ??= new DecodingThread(module);
  const request = requestFor(items, shape);
  return thread.run(request).then(({ pixels, ok, bytes }) => ({
    pixels,
    decoded: (k) => ok[k] === 1,
    bytes: (k) => {
      const { span, offset, size } = request.images[k];
      const b = bytes[span];
      const length = size < 0 ? (b?.length ?? 0) : size;
      return b && offset + length <= b.length ? Buffer.from(b.buffer, b.byteOffset + offset, length) : undefined;
    },
  }));
}
