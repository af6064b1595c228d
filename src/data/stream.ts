import { readBoundedAsync } from '../io/bounded.js';
import { totalmem } from 'node:os';
import { UsageError } from '../errors.js';
import { decodeImage } from './decode.js';
import { decodeOffThread } from './decodeWorker.js';
import { readMember, ShardReader } from './tar.js';
import { itemName, labelsOf, type DecodedBatch, type ImageItem, type ImageSource } from './source.js';
import type { ImageShape } from '../math/imageShape.js';

export interface StreamOptions {
  /** A file that cannot be decoded stops the run with an error naming it (default: it is skipped and counted). */
  strict?: boolean;
  /**
   * Bytes of decoded images kept for later passes (default: 1/16 of the machine's memory, at most 1 GiB;
   * UAP_CACHE_MB). The cache fills from the second pass on: a set read once (an evaluation) keeps nothing.
   */
  cacheBytes?: number;
  /** Chunks of images (a batch or more, DECODE_CHUNK_BYTES) decoded ahead of the one in use (default 2). */
  prefetch?: number;
  /** Images decoded at once within a batch (sharp decodes on libuv's threads, off the main thread). */
  concurrency?: number;
  /** Told each file that is skipped, when it is found. */
  onSkip?: (item: ImageItem, reason: string) => void;
}

/**
 * Small images are read and decoded in chunks of this many bytes of pixels (at most DECODE_CHUNK_MOST
 * images), larger ones a batch at a time: each chunk costs a message to the decoding thread and a read
 * per shard, which for 28x28 images in batches of 32 was a tenth of the decoding thread's time.
 */
const DECODE_CHUNK_BYTES = 2 ** 21;
const DECODE_CHUNK_MOST = 256;

/** The default decoded-image cache: UAP_CACHE_MB, else 1/16 of memory capped at 1 GiB. */
export function defaultCacheBytes(): number {
  const mb = Number(process.env.UAP_CACHE_MB);
  if (process.env.UAP_CACHE_MB !== undefined && Number.isFinite(mb) && mb >= 0) return mb * 2 ** 20;
  return Math.min(2 ** 30, totalmem() / 16);
}

/** Decodes one listed image (a file or a tar member; `bytes`: already read) to [h, w, c] uint8. */
export async function decodeItem(item: ImageItem, shape: ImageShape, shards?: ShardReader, bytes?: Buffer): Promise<Uint8Array> {
  const [h, w, c] = shape;
  const m = item.member;
  const source = bytes ?? (m ? await (shards ? shards.read(item.path, m) : readMember(item.path, m)) : item.path);
  return decodeImage(source, h, w, c as 1 | 3);
}

/**
 * A listed image set decoded on demand: batches are decoded ahead of use while the model runs, and a
 * bounded cache keeps decoded images for the next pass (the first ones of the list that fit: a
 * sequential scan then always finds the same images cached, where least-recently-used would find none).
 * The cache fills only once a second pass begins: most sets are read once (an evaluation over 50,000
 * images), and for those a cache is memory held for nothing (752 MB for 5,000 images at 224). Files that do
 * not decode are found on the first pass, counted and left out of every later one; positions (and so
 * results) then refer to the images that decode, as with an in-memory set.
 */
export class StreamedImages implements ImageSource {
  readonly skipped: { path: string; reason: string }[] = [];
  private readonly bad = new Set<number>();
  private readonly cache = new Map<number, Uint8Array>();
  private readonly cacheSlots: number;
  private kept: number[];
  private readonly opts: StreamOptions;
  /** Passes begun over the set (batches() calls); the cache fills from the second. */
  private passes = 0;

  constructor(
    readonly shape: ImageShape,
    readonly listed: ImageItem[],
    opts: StreamOptions = {},
  ) {
    this.opts = opts;
    this.kept = listed.map((_, i) => i);
    this.cacheSlots = Math.floor((opts.cacheBytes ?? defaultCacheBytes()) / (shape[0] * shape[1] * shape[2]));
  }

  get items(): ImageItem[] {
    return this.kept.map((i) => this.listed[i]);
  }
  get size(): number {
    return this.kept.length;
  }
  get labels(): Int32Array | undefined {
    return labelsOf(this.items);
  }
  private get perImage(): number {
    return this.shape[0] * this.shape[1] * this.shape[2];
  }

  /** Keeps a decoded image for later passes when it is one of the first that fit (by position, not by which decode finished first). */
  private keep(i: number, px: Uint8Array): Uint8Array {
    if (this.passes > 1 && i < this.cacheSlots) this.cache.set(i, px.length === px.buffer.byteLength ? px : px.slice());
    return px;
  }

  /** One listed image decoded (`bytes`: already read); null when it does not decode (recorded). */
  private async image(i: number, shards: ShardReader, bytes?: Buffer): Promise<Uint8Array | null> {
    try {
      return this.keep(i, await decodeItem(this.listed[i], this.shape, shards, bytes));
    } catch (e) {
      const reason = (e as Error).message.split('\n')[0];
      const item = this.listed[i];
      if (this.opts.strict) throw new UsageError(`image ${itemName(item)}: cannot be decoded (${reason})`);
      this.bad.add(i);
      this.skipped.push({ path: itemName(item), reason });
      this.opts.onSkip?.(item, reason);
      return null;
    }
  }

  /**
   * The bytes of the listed images `ids`: tar members lying side by side read in one go per shard, files
   * each in one read. Any not read here (a failed read, a scattered member) are read again as they are
   * decoded, where a failure is recorded with its reason.
   */
  private async readBytes(ids: number[], shards: ShardReader): Promise<Map<number, Buffer>> {
    const withMember = ids.filter((i) => this.listed[i].member);
    const files = ids.filter((i) => !this.listed[i].member);
    const [read, fileBytes] = await Promise.all([
      shards.readMany(withMember.map((i) => ({ file: this.listed[i].path, member: this.listed[i].member! }))),
      Promise.all(files.map((i) => readBoundedAsync(this.listed[i].path, { what: 'image', kind: 'image' }).catch(() => undefined))),
    ]);
    const out = new Map<number, Buffer>();
    for (const i of withMember) if (read.has(this.listed[i].member!)) out.set(i, read.get(this.listed[i].member!)!);
    files.forEach((i, k) => fileBytes[k] && out.set(i, fileBytes[k]));
    return out;
  }

  /**
   * The listed images `ids` decoded; the ones that decode, in order. The decoding thread reads them
   * and decodes the small PNGs of the model's size (decodeWorker.ts); the rest, and all of them where
   * there is no such thread, are decoded `concurrency` at a time here (sharp works on libuv's threads).
   */
  private async decodeMany(ids: number[], shards: ShardReader): Promise<{ ids: number[]; pixels: Uint8Array }> {
    const out: (Uint8Array | null | undefined)[] = ids.map((i) => this.cache.get(i) ?? (this.bad.has(i) ? null : undefined));
    const todo = ids.flatMap((i, k) => (out[k] === undefined ? [k] : []));
    const viaThread = todo.length
      ? decodeOffThread(
          todo.map((k) => this.listed[ids[k]]),
          this.shape,
        )
      : undefined;
    let bytesOf: (j: number) => Buffer | undefined;
    if (viaThread) {
      const batch = await viaThread;
      todo.forEach(
        (k, j) => batch.decoded(j) && (out[k] = this.keep(ids[k], batch.pixels.subarray(j * this.perImage, (j + 1) * this.perImage))),
      );
      if (todo.length === ids.length && todo.every((_, j) => batch.decoded(j))) return { ids, pixels: batch.pixels };
      bytesOf = batch.bytes;
    } else {
      const read = await this.readBytes(
        todo.map((k) => ids[k]),
        shards,
      );
      bytesOf = (j) => read.get(ids[todo[j]]);
    }
    const rest = todo.flatMap((k, j) => (out[k] === undefined ? [[k, j]] : []));
    let next = 0;
    const decodeRest = async () => {
      while (next < rest.length) {
        const [k, j] = rest[next++];
        out[k] = await this.image(ids[k], shards, bytesOf(j));
      }
    };
    await Promise.all(Array.from({ length: Math.min(rest.length, this.opts.concurrency ?? 8) }, decodeRest));
    const ok = ids.filter((_, k) => out[k]);
    const pixels = new Uint8Array(ok.length * this.perImage);
    let at = 0;
    for (const px of out) if (px) pixels.set(px, at++ * this.perImage);
    return { ids: ok, pixels };
  }

  /** A listed file found unreadable elsewhere (a worker scoring a range of this set): left out from now on, as if met here. */
  markUnreadable(listedIndex: number, reason: string): void {
    if (this.bad.has(listedIndex)) return;
    const item = this.listed[listedIndex];
    if (this.opts.strict) throw new UsageError(`image ${itemName(item)}: cannot be decoded (${reason})`);
    this.bad.add(listedIndex);
    this.skipped.push({ path: itemName(item), reason });
    this.opts.onSkip?.(item, reason);
    this.kept = this.kept.filter((i) => i !== listedIndex);
  }

  async *batches(size: number): AsyncGenerator<DecodedBatch> {
    // Listed images decoded in chunks of at least `size` (more for small images: DECODE_CHUNK_BYTES),
    // yielded `size` at a time; a chunk that loses unreadable files yields a shorter batch.
    this.passes++;
    const order = [...this.kept];
    const chunkSize = Math.max(size, Math.min(DECODE_CHUNK_MOST, Math.floor(DECODE_CHUNK_BYTES / this.perImage)));
    const chunks: number[][] = [];
    for (let s = 0; s < order.length; s += chunkSize) chunks.push(order.slice(s, s + chunkSize));
    const ahead = Math.max(1, (this.opts.prefetch ?? 2) + 1);
    const pending: Promise<{ ids: number[]; pixels: Uint8Array }>[] = [];
    let issued = 0;
    let start = 0;
    const shards = new ShardReader();
    const top = () => {
      while (issued < chunks.length && pending.length < ahead) {
        const p = this.decodeMany(chunks[issued++], shards);
        p.catch(() => {}); // awaited in turn below; this keeps an early failure from going unhandled
        pending.push(p);
      }
    };
    try {
      top();
      while (pending.length) {
        const { ids, pixels } = await pending.shift()!;
        top();
        for (let s = 0; s < ids.length; s += size) {
          const part = ids.slice(s, s + size);
          yield {
            start,
            items: part.map((i) => this.listed[i]),
            pixels: pixels.subarray(s * this.perImage, (s + part.length) * this.perImage),
          };
          start += part.length;
        }
      }
    } finally {
      await Promise.allSettled(pending);
      await shards.close();
      // Found unreadable: left out of the positions from now on.
      if (this.bad.size) this.kept = this.kept.filter((i) => !this.bad.has(i));
    }
    // After the cleanup, not inside it: an error of the pass itself is what the caller should see.
    if (this.kept.length === 0)
      throw new UsageError(
        `none of the ${this.listed.length} images could be decoded (first: ${this.skipped[0]?.path}: ${this.skipped[0]?.reason})`,
      );
  }

  async pick(indices: ArrayLike<number>): Promise<Uint8Array> {
    const ids = Array.from(indices, (k) => this.kept[k]);
    const shards = new ShardReader();
    const { ids: ok, pixels } = await this.decodeMany(ids, shards).finally(() => shards.close());
    if (ok.length !== ids.length)
      throw new UsageError(`image ${itemName(this.listed[ids.find((i) => !ok.includes(i))!])}: could not be decoded again`);
    return pixels;
  }
}
