import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { cacheDir } from '../data/fashion.js';
import type { Backend } from '../engine/backend.js';
import type { Log } from '../log.js';
import { assetsDir, EMBEDDED_DIR } from '../paths.js';
import { UsageError, printable } from '../errors.js';
import { connected, queueConnection, QUEUE_NAME, redacted } from './connection.js';
import { ShardWork } from './shardWork.js';
import { forQueue } from './workerFiles.js';
import { WorkerModels } from './workerModels.js';

export { scrubbed } from './workerFiles.js';

/**
 * `uap worker`: takes jobs from the queue and runs them (docs/queue.md: trust model). It runs only
 * jobs signed with the queue's key and signs what it returns; it loads only the models its operator
 * allowed (bundled names and its --model list, matched by the files' hash, never a path from the
 * job) and reads images only inside its folders (by real path, checked before any read); every job
 * field is bounded (jobFields.ts). A shard whose model or images differ from the coordinator's
 * (fingerprints) is refused, so results of different files never mix. What it stores in Redis for a
 * refusal is one line without its folders' paths or a stack.
 */

export interface WorkerOptions {
  url: string;
  /** The queue's shared key (signing.ts): jobs without its signature are refused. */
  key: string;
  /** Where the models of its shards run. */
  backend: Backend;
  assets?: string;
  /** Models it may load besides the bundled ones (cards, model folders or files); a job names one by its files' hash. */
  models?: string[];
  /** Folders of images it may read besides the embedded images, the assets folder and uap's cache. */
  roots?: string[];
  /** How long a shard stays locked to this worker without a heartbeat: a dead worker's shard goes to another after it (ms; default 30,000). */
  lockMs?: number;
  log: Log;
  signal?: AbortSignal;
}

export async function runWorker(o: WorkerOptions): Promise<void> {
  const connection = queueConnection(o.url);
  const assets = assetsDir(o.assets);
  for (const r of o.roots ?? []) if (!existsSync(r)) throw new UsageError(`{root} ${r}: no such folder`);
  const roots = [EMBEDDED_DIR, ...(existsSync(assets) ? [assets] : []), cacheDir(), ...(o.roots ?? [])].map((r) => resolve(r));
  const models = new WorkerModels(o.models ?? [], assets, o.backend, o.log);
  const { Worker, UnrecoverableError } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const redis = new Redis(o.url, { maxRetriesPerRequest: 3, lazyConnect: true, ...(connection.tls ? { tls: {} } : {}) });
  redis.on('error', () => {}); // the worker's own connection reports Redis trouble once
  // Refusals are final (UnrecoverableError): another try on this worker would refuse again.
  const refuse = (message: string) => new UnrecoverableError(`worker refused the shard: ${message}`);
  const work = new ShardWork(o.key, models, assets, roots, redis, refuse);

  const worker = new Worker(
    QUEUE_NAME,
    async (job) => {
      const started = Date.now();
      try {
        const { sealed, images, model } = await work.run(job);
        o.log.info(
          `${job.name === 'grad' ? 'gradient shard' : job.name === 'craft' ? 'crafting run' : 'shard'} ${printable(String(job.id))}: ${images} images of ${model} in ${((Date.now() - started) / 1000).toFixed(2)} s`,
        );
        return sealed;
      } catch (e) {
        throw forQueue(e, roots);
      }
    },
    { connection, concurrency: 1, lockDuration: o.lockMs ?? 30_000, stalledInterval: o.lockMs ?? 30_000, maxStalledCount: 2 },
  );
  worker.on('failed', (job, e) => o.log.warn(`shard ${printable(String(job?.id))}: ${e.message}`));
  await connected(worker, o.url, { onError: (e) => o.log.warn(`queue ${redacted(o.url)}: ${e.message}`) });
  await redis.connect();
  o.log.info(`worker: listening on ${redacted(o.url)} (queue ${QUEUE_NAME}); models: ${models.describe()}; images in ${roots.join(', ')}`);
  await new Promise<void>((done) => {
    if (o.signal?.aborted) return done();
    o.signal?.addEventListener('abort', () => done(), { once: true });
  });
  await worker.close(); // waits for the shard under way
  redis.disconnect();
  await models.dispose();
}
