import { existsSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { Classifier } from '../model/classifier.js';
import { openImages } from '../data/dataset.js';
import { itemName } from '../data/source.js';
import { cacheDir } from '../data/fashion.js';
import { scorePart } from '../analysis/noiseScore.js';
import { dataFolder, defaultData, loadModel, type Log } from '../pipeline.js';
import { assetsDir, EMBEDDED_DIR } from '../paths.js';
import { UsageError } from '../errors.js';
import { connected, queueConnection, QUEUE_NAME, redacted } from './connection.js';
import type { ShardResult } from './coordinator.js';
import { dataPrint, localItems, modelPrint, perturbationKey, sha256, type ScoreShard } from './shards.js';

/**
 * `uap worker`: takes shards from the queue and scores them. It loads each model once and keeps it;
 * it reads models and images only inside the folders it was started with (a job names a model or a
 * set, it cannot make the worker read an arbitrary path), and refuses a shard whose model or images
 * differ from the coordinator's (fingerprints), so results of different files never mix.
 */

export interface WorkerOptions {
  url: string;
  assets?: string;
  /** Folders it may read besides the embedded model and images, the assets folder and uap's cache. */
  roots?: string[];
  /** How long a shard stays locked to this worker without a heartbeat: a dead worker's shard goes to another after it (ms; default 30,000). */
  lockMs?: number;
  log: Log;
  signal?: AbortSignal;
}

/** The real path of `path` when it lies inside one of `roots`, else a refusal naming it. */
function inside(path: string, roots: string[], what: string): string {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw new UsageError(`${what} ${path}: not found on this worker`);
  }
  if (!roots.some((r) => real === r || real.startsWith(r + sep))) throw new UsageError(`${what} ${path}: outside the folders this worker may read (${roots.join(', ')}; add one with --root)`);
  return real;
}

export async function runWorker(o: WorkerOptions): Promise<void> {
  const connection = queueConnection(o.url);
  const assets = assetsDir(o.assets);
  const roots = [EMBEDDED_DIR, assets, cacheDir(), ...(o.roots ?? [])].filter((r) => r && existsSync(r)).map((r) => realpathSync(resolve(r)));
  for (const r of o.roots ?? []) if (!existsSync(r)) throw new UsageError(`{root} ${r}: no such folder`);
  const { Worker, UnrecoverableError } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const redis = new Redis(o.url, { maxRetriesPerRequest: 3, lazyConnect: true, ...(connection.tls ? { tls: {} } : {}) });
  redis.on('error', () => {}); // the worker's own connection reports Redis trouble once
  const models = new Map<string, Promise<{ model: Classifier; print: string }>>();

  const modelFor = (m: ScoreShard['model']) => {
    const key = JSON.stringify(m);
    let got = models.get(key);
    if (!got) {
      got = (async () => {
        const model = await loadModel(m.spec, { assets, card: m.card }, o.log);
        if (model.file) inside(model.file, roots, 'model');
        return { model, print: await modelPrint(model) };
      })();
      got.catch(() => models.delete(key)); // a model that failed to load is tried afresh by the next shard
      models.set(key, got);
    }
    return got;
  };

  /** The shard's model, images and v, after every check; a refusal otherwise. */
  const prepare = async (s: ScoreShard) => {
    // Refusals are final (UnrecoverableError): another try on this worker would refuse again.
    const refuse = (message: string) => new UnrecoverableError(`worker refused the shard: ${message}`);
    let model: Classifier;
    let print: string;
    try {
      ({ model, print } = await modelFor(s.model));
    } catch (e) {
      throw refuse((e as Error).message);
    }
    if (print !== s.modelPrint) throw refuse(`model ${s.model.spec}: its files here differ from the coordinator's (fingerprint ${print.slice(0, 12)}, expected ${s.modelPrint.slice(0, 12)})`);
    let dir: string;
    try {
      dir = inside(dataFolder(s.data ?? defaultData(model, assets).val, assets), roots, 'data');
      for (const i of localItems(s.items, dir)) inside(i.path, roots, 'image');
    } catch (e) {
      throw refuse((e as Error).message);
    }
    if (dataPrint(s.items, dir) !== s.dataPrint) throw refuse(`data ${s.data ?? 'default'}: the shard's images here differ from the coordinator's (names, labels or sizes)`);
    const vs: Float32Array[] = [];
    for (const sha of s.vs) {
      const bytes = await redis.getBuffer(perturbationKey(sha));
      if (!bytes || sha256(bytes) !== sha) throw refuse(`perturbation ${sha.slice(0, 12)}: missing or damaged in Redis`);
      const v = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      if (v.length !== model.inputShape.reduce((a, b) => a * b, 1)) throw refuse(`perturbation: ${v.length} values for a ${model.inputShape.join('x')} model`);
      vs.push(v);
    }
    return { model, vs, set: openImages(localItems(s.items, dir), model.inputShape, { strict: s.strict }) };
  };

  const worker = new Worker(
    QUEUE_NAME,
    async (job) => {
      const s = job.data as ScoreShard;
      const started = Date.now();
      const { model, vs, set } = await prepare(s);
      const part = await scorePart(model, set, vs, { radii: s.radii, draws: s.draws, batchSize: s.batchSize, onBatch: (done) => void job.updateProgress(done) });
      const reasons = new Map(set.skipped.map((k) => [k.path, k.reason]));
      const kept = new Set(part.kept);
      const skipped = s.items.flatMap((_, at) => (kept.has(at) ? [] : [{ at, reason: reasons.get(itemName(set.listed[at])) ?? 'not decoded' }]));
      o.log.info(`shard ${job.id}: ${s.items.length} images of ${s.model.spec} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return { ...part, skipped } satisfies ShardResult;
    },
    { connection, concurrency: 1, lockDuration: o.lockMs ?? 30_000, stalledInterval: o.lockMs ?? 30_000, maxStalledCount: 2 },
  );
  worker.on('failed', (job, e) => o.log.warn(`shard ${job?.id}: ${e.message}`));
  await connected(worker, o.url, { onError: (e) => o.log.warn(`queue ${redacted(o.url)}: ${e.message}`) });
  await redis.connect();
  o.log.info(`worker: listening on ${redacted(o.url)} (queue ${QUEUE_NAME}); reads models and images in ${roots.join(', ')}`);
  await new Promise<void>((done) => {
    if (o.signal?.aborted) return done();
    o.signal?.addEventListener('abort', () => done(), { once: true });
  });
  await worker.close(); // waits for the shard under way
  redis.disconnect();
  for (const m of models.values()) await m.then((x) => x.model.dispose()).catch(() => {});
}
