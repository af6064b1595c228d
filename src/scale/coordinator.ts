import type { Classifier } from '../model/classifier.js';
import type { CardOverrides } from '../model/load.js';
import type { StreamedImages } from '../data/stream.js';
import { joinLabels, joinParts, type NoiseScoreOptions, type ScorePart } from '../analysis/noiseScore.js';
import { UsageError } from '../errors.js';
import { connected, queueConnection, QUEUE_NAME, redacted } from './connection.js';
import { dataPrint, modelPrint, perturbationKey, planShards, sha256, shardItems, type ScoreShard } from './shards.js';

/**
 * The coordinator's side of a distributed scoring: cut the listed set into shards, queue them on
 * BullMQ (the engine re-delivers the shard of a worker that dies), follow their progress, and join
 * their parts in shard order, which gives the local run's figures exactly.
 */

export interface QueueScoring {
  url: string;
  /** The model and the image set as the user named them: each worker resolves them on its own disk. */
  model: { spec: string; card?: CardOverrides };
  data: string | null;
  /** The set's folder here (shards name their images relative to it). */
  dir: string;
  /** Images per shard (rounded up to whole batches; default 512). */
  shardSize?: number;
  /** Stop on the first file that does not decode (as locally). */
  strict?: boolean;
  /** Told once when no worker listens yet. */
  warn?: (message: string) => void;
}

/** What a worker returns for a shard: its part, and the positions (in the shard) of files that did not decode. */
export interface ShardResult extends ScorePart {
  skipped: { at: number; reason: string }[];
}

/** Seconds a shard's result stays in Redis: a coordinator restarted within it (or the same command rerun) takes it as it is. */
const KEEP_SECONDS = 24 * 3600;

/** v's figures on a listed set with noise draws, scored in shards by workers: the local run's figures (see joinParts). */
export async function scoreOnQueue(q: QueueScoring, model: Classifier, set: StreamedImages, v: Float32Array, o: NoiseScoreOptions) {
  const { ranges, parts } = await queueParts(q, model, set, [v], o);
  return joinParts(set.listed, ranges, parts, o);
}

/** Top-1 labels of a listed set, clean and with each of `vs`, scored in shards by workers (uap transfer). */
export async function labelsOnQueue(q: QueueScoring, model: Classifier, set: StreamedImages, vs: Float32Array[], o: { batchSize?: number; onBatch?: (done: number) => void }): Promise<Int32Array[]> {
  return joinLabels((await queueParts(q, model, set, vs, { ...o, radii: [], draws: 0 })).parts);
}

/** Queues the shards of scoring `set` with `vs` (and noise), follows them, and gives their parts in shard order. */
async function queueParts(q: QueueScoring, model: Classifier, set: StreamedImages, vs: Float32Array[], o: NoiseScoreOptions): Promise<{ ranges: { start: number; end: number }[]; parts: ShardResult[] }> {
  const connection = queueConnection(q.url);
  const { Queue, QueueEvents } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const queue = new Queue(QUEUE_NAME, { connection });
  const events = new QueueEvents(QUEUE_NAME, { connection });
  const redis = new Redis(q.url, { maxRetriesPerRequest: 3, lazyConnect: true, ...(connection.tls ? { tls: {} } : {}) });
  redis.on('error', () => {}); // failures reach the commands that meet them
  try {
    await Promise.all([connected(queue, q.url, { onError: (e) => q.warn?.(`queue ${redacted(q.url)}: ${e.message}`) }), connected(events, q.url, { onError: () => {} })]);
    await redis.connect().catch((e: Error) => {
      throw new UsageError(`{queue} ${redacted(q.url)}: cannot connect (${e.message})`);
    });
    // Each perturbation goes to Redis once, by its hash; shards name it.
    const vShas: string[] = [];
    for (const v of vs) {
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      const sha = sha256(bytes);
      await redis.set(perturbationKey(sha), Buffer.from(bytes), 'EX', KEEP_SECONDS);
      vShas.push(sha);
    }
    const batchSize = Math.min(o.batchSize ?? 32, model.maxBatch?.forward ?? o.batchSize ?? 32);
    const ranges = planShards(set.listed.length, q.shardSize ?? 512, batchSize);
    const mPrint = await modelPrint(model);
    const shards: ScoreShard[] = ranges.map((r) => {
      const items = shardItems(set.listed.slice(r.start, r.end), q.dir);
      return { model: q.model, modelPrint: mPrint, data: q.data, items, dataPrint: dataPrint(items, q.dir), vs: vShas, radii: o.radii, draws: o.draws, batchSize, strict: q.strict ?? false };
    });
    // The same shard of the same scoring has the same id: queued twice, it runs once.
    const ids = shards.map((s, i) => `${sha256(JSON.stringify({ ...s, items: undefined, n: s.items.length, i })).slice(0, 24)}-${i}`);
    for (const id of ids) {
      const old = await queue.getJob(id);
      if (old && (await old.isFailed())) await old.remove(); // a failure of an earlier try is not this run's result
    }
    if ((await queue.getWorkersCount()) === 0) q.warn?.(`queue ${redacted(q.url)}: no uap worker is listening yet; the ${shards.length} shards wait until one starts (uap worker --queue URL)`);
    const done = new Array<number>(shards.length).fill(0);
    const index = new Map(ids.map((id, i) => [id, i]));
    const tell = () => o.onBatch?.(done.reduce((a, b) => a + b, 0));
    events.on('progress', ({ jobId, data }: { jobId: string; data: unknown }) => {
      const i = index.get(jobId);
      if (i === undefined || typeof data !== 'number') return;
      done[i] = data;
      tell();
    });
    const jobs = await queue.addBulk(
      shards.map((data, i) => ({
        name: 'score',
        data,
        opts: { jobId: ids[i], attempts: 3, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { age: KEEP_SECONDS }, removeOnFail: { age: KEEP_SECONDS } },
      })),
    );
    const parts = await Promise.all(
      jobs.map(async (job, i) => {
        try {
          const r = (await job.waitUntilFinished(events)) as ShardResult;
          done[i] = ranges[i].end - ranges[i].start;
          tell();
          return r;
        } catch (e) {
          throw new UsageError(`queue: shard ${i + 1} of ${shards.length} (images ${ranges[i].start + 1}-${ranges[i].end}) failed on a worker: ${(e as Error).message}`);
        }
      }),
    );
    parts.forEach((p, s) => p.skipped.forEach((k) => set.markUnreadable(ranges[s].start + k.at, k.reason)));
    return { ranges, parts };
  } finally {
    // Closing waits for Redis; when it is gone, that would be forever.
    await Promise.race([Promise.allSettled([events.close(), queue.close()]), new Promise((r) => setTimeout(r, 2000).unref())]);
    redis.disconnect();
  }
}
