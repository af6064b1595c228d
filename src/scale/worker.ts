import { checkOptions } from '../attacks/options.js';
import { existsSync, readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import { homedir } from 'node:os';
import type { Classifier } from '../classifier/classifier.js';
import { loadImages, openImages } from '../data/dataset.js';
import { itemName } from '../data/source.js';
import { cacheDir } from '../data/fashion.js';
import { allDraws, scorePart } from '../evaluation/noiseScore.js';
import { checkRadius, craft, methodOf, METHOD_NAMES } from '../attacks/methods.js';
import { dataFolder, defaultData } from '../data/sets.js';
import { bundledModels, findCard, loadModel } from '../import/load.js';
import { resolveCardPath } from '../classifier/card.js';
import { modelSha256 } from '../run/provenance.js';
import type { Engine } from '../engine/backend.js';
import type { Log } from '../log.js';
import { assetsDir, EMBEDDED_DIR, packageVersion } from '../paths.js';
import { UsageError, printable } from '../errors.js';
import { connected, queueConnection, QUEUE_NAME, redacted } from './connection.js';
import type { ShardResult } from './coordinator.js';
import {
  SHARD_PROTOCOL,
  dataPrint,
  localItems,
  modelPrint,
  perturbationKey,
  sha256,
  toBase64,
  type CraftJob,
  type Crafted,
  type GradJob,
  type ScoreShard,
} from './shards.js';
import * as tf from '../tf.js';
import { shardGradient } from '../attacks/sgd.js';
import { decodeItem, defaultCacheBytes } from '../data/stream.js';
import { openJob, sealResult, type Sealed } from './signing.js';
import {
  JobFieldError,
  MAX_CRAFT_BYTES,
  MAX_NOISE_BYTES,
  MAX_SHARD_FORWARDS,
  int,
  parseCraftJob,
  parseGradJob,
  parseScoreShard,
} from './jobFields.js';
import type { ImageItem } from '../data/source.js';

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
  engine: Engine;
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

/** The real path of `path` when it lies inside one of `folders`, else a refusal naming it (not the folders: they are this machine's). */
function inside(path: string, folders: string[], what: string): string {
  // Real paths of the folders as they are now (uap's cache may be made after the worker starts).
  const roots = folders.map((r) => (existsSync(r) ? realpathSync(r) : r));
  // One message whether the path is missing or outside: a job cannot probe what exists on the worker.
  const refused = new UsageError(
    `${what} ${path}: not among the files this worker may read (its operator adds folders with uap worker --root)`,
  );
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    throw refused;
  }
  if (!roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep))) throw refused;
  return real;
}

/**
 * A message as a refusal stored in Redis says it: one printable line, at most 500 characters, with
 * the folders of absolute paths left out (they describe this machine, not the job).
 */
export function scrubbed(message: string, folders: string[] = []): string {
  let line = message.split('\n')[0];
  // This machine's folders by name first (they may hold spaces), longest first; then any absolute path's folders.
  for (const f of [...folders, process.cwd(), homedir()].filter((f) => f.length > 1).sort((a, b) => b.length - a.length))
    line = line.split(f).join('...');
  line = printable(line).replace(/(^|[^\w.-])\/(?:[^\s/'"()<>[\],:]+\/)+/g, '$1.../');
  return line.length > 500 ? `${line.slice(0, 497)}...` : line;
}

/** An error for the queue: its scrubbed message and no stack (BullMQ stores a job's stack traces). */
function forQueue(e: unknown, folders: string[]): Error {
  const err = e instanceof Error ? e : new Error(String(e));
  err.message = scrubbed(err.message, folders);
  err.stack = '';
  return err;
}

/** A model a worker's operator allows: its spec, its model file, and the hash of its files (at first need). */
interface AllowedModel {
  spec: string;
  file: string;
  files?: Promise<string | null>;
  /** The file's state when hashed: a model rewritten in place is hashed again. */
  stamp?: string;
}

function allowedModel(spec: string, assets: string): AllowedModel {
  const card = findCard(spec, {}, assets);
  return { spec, file: resolveCardPath(card, card.model, assets) };
}

function filesOf(a: AllowedModel): Promise<string | null> {
  const st = statSync(a.file, { throwIfNoEntry: false });
  const stamp = st ? `${st.size}:${st.mtimeMs}` : 'gone';
  if (!a.files || a.stamp !== stamp) {
    a.files = modelSha256(a.file);
    a.stamp = stamp;
  }
  return a.files;
}

/** Whether `spec` names a folder that is not itself a model (no card or model.json in it). */
function isModelFolder(spec: string): boolean {
  if (!existsSync(spec) || !statSync(spec).isDirectory()) return false;
  return !['card.json', 'model.card.json', 'model.json'].some((f) => existsSync(join(spec, f)));
}

/** Model cards (card.json) under `dir`, at most 6 folders deep and 10,000 folders in all. */
function cardsUnder(dir: string): string[] {
  const out: string[] = [];
  let budget = 10_000;
  const walk = (d: string, depth: number) => {
    if (depth > 6 || budget-- <= 0) return;
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries)
      if (e.isDirectory()) walk(join(d, e.name), depth + 1);
      else if (e.isFile() && e.name === 'card.json') out.push(join(d, e.name));
  };
  walk(dir, 0);
  return out;
}

/** Values of one image the model takes (height x width x channels). */
const valuesOf = (model: Classifier) => model.inputShape.reduce((a, b) => a * b, 1);

const JOB_NAMES = ['score', 'grad', 'craft'] as const;

/** Models a worker keeps loaded at once. */
const MODELS_KEPT = 2;

export async function runWorker(o: WorkerOptions): Promise<void> {
  const connection = queueConnection(o.url);
  const assets = assetsDir(o.assets);
  for (const r of o.roots ?? []) if (!existsSync(r)) throw new UsageError(`{root} ${r}: no such folder`);
  const roots = [EMBEDDED_DIR, ...(existsSync(assets) ? [assets] : []), cacheDir(), ...(o.roots ?? [])].map((r) => resolve(r));
  // The operator's models: each one's card is found (and so checked) now, its files hashed at first need.
  // A folder that is not itself a model allows every model whose card lies under it (a defence run's rounds).
  const allowed: AllowedModel[] = [];
  const folders: string[] = [];
  for (const spec of o.models ?? []) {
    if (isModelFolder(spec)) folders.push(resolve(spec));
    else allowed.push(allowedModel(spec, assets));
  }
  const { Worker, UnrecoverableError } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const redis = new Redis(o.url, { maxRetriesPerRequest: 3, lazyConnect: true, ...(connection.tls ? { tls: {} } : {}) });
  redis.on('error', () => {}); // the worker's own connection reports Redis trouble once
  const models = new Map<string, Promise<{ model: Classifier; print: string }>>();
  const found = new Map<string, AllowedModel>();

  // Refusals are final (UnrecoverableError): another try on this worker would refuse again.
  const refuse = (message: string) => new UnrecoverableError(`worker refused the shard: ${message}`);

  /** Which of the allowed models a job means: a bundled one by name, else the one whose files hash to `files`. */
  const allowedSpec = async (m: ScoreShard['model'], files: string | undefined): Promise<string> => {
    if (Object.hasOwn(bundledModels(), m.spec)) return m.spec;
    if (files) {
      for (const a of allowed) if ((await filesOf(a)) === files) return a.spec;
      for (const f of folders)
        for (const card of cardsUnder(f)) {
          let a = found.get(card);
          if (!a) {
            try {
              a = allowedModel(card, assets);
            } catch {
              continue; // not a card of a loadable model: not a candidate
            }
            found.set(card, a);
          }
          if ((await filesOf(a)) === files) return a.spec;
        }
    }
    throw new UsageError(
      `model ${basename(m.spec)}: not among this worker's models (bundled names, or a model its operator allows with uap worker --model; matched by the files' contents)`,
    );
  };

  const modelFor = (m: ScoreShard['model'], files: string | undefined) => {
    const key = JSON.stringify([m, files]);
    let got = models.get(key);
    if (!got) {
      got = (async () => {
        const spec = await allowedSpec(m, files);
        const model = await loadModel(spec, { assets, card: m.card, engine: o.engine }, o.log);
        return { model, print: await modelPrint(model) };
      })();
      got.catch(() => models.delete(key)); // a model that failed to load is tried afresh by the next shard
      models.set(key, got);
      // The two models used last stay loaded (a defence run brings a new one each round): older ones are freed.
      while (models.size > MODELS_KEPT) {
        const [oldest, old] = models.entries().next().value as [string, Promise<{ model: Classifier }>];
        models.delete(oldest);
        void old.then((m) => m.model.dispose()).catch(() => {});
      }
    } else {
      models.delete(key); // most recently used last
      models.set(key, got);
    }
    return got;
  };

  // The noise draws of the scoring under way: the same for each of its shards (drawing them at 224x224x3 costs tens of ms).
  let noise: { key: string; draws: Float32Array[] } | undefined;
  const noiseFor = (model: Classifier, s: ScoreShard) => {
    const key = JSON.stringify([model.inputShape, s.radii, s.draws]);
    if (noise?.key !== key) noise = { key, draws: allDraws(model.inputShape, s) };
    return noise.draws;
  };

  /** The job's model and the folder of its images here, after the checks of model, folders and images. */
  const check = async (
    s: Pick<ScoreShard, 'protocol' | 'uap' | 'model' | 'modelPrint' | 'modelFiles' | 'data' | 'role' | 'items' | 'dataPrint'>,
  ) => {
    if (s.protocol !== SHARD_PROTOCOL)
      throw refuse(
        `the coordinator runs uap ${s.uap} with job format ${s.protocol}, this worker uap ${packageVersion()} with ${SHARD_PROTOCOL}: run the same uap everywhere`,
      );
    let model: Classifier;
    let print: string;
    let dir: string;
    try {
      ({ model, print } = await modelFor(s.model, s.modelFiles));
      dir = inside(dataFolder(s.data ?? defaultData(model, assets)[s.role], assets), roots, 'data');
      for (const i of localItems(s.items, dir)) inside(i.path, roots, 'image');
      if (print !== s.modelPrint)
        throw new Error(
          `model ${basename(s.model.spec)}: its files here differ from the coordinator's (fingerprint ${print.slice(0, 12)}, expected ${s.modelPrint.slice(0, 12)})`,
        );
    } catch (e) {
      throw refuse((e as Error).message);
    }
    if (dataPrint(s.items, dir) !== s.dataPrint)
      throw refuse(`data ${s.data ?? 'default'}: the shard's images here differ from the coordinator's (names, labels or sizes)`);
    return { model, items: localItems(s.items, dir) };
  };

  /** A perturbation the coordinator put in Redis, checked against its hash and the model's size. */
  const perturbation = async (sha: string, model: Classifier) => {
    const bytes = await redis.getBuffer(perturbationKey(sha));
    if (!bytes || sha256(bytes) !== sha) throw refuse(`perturbation ${sha.slice(0, 12)}: missing or damaged in Redis`);
    const v = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    if (v.length !== valuesOf(model)) throw refuse(`perturbation: ${v.length} values for a ${model.inputShape.join('x')} model`);
    return v;
  };

  /** A scoring shard: its part of the figures, and which of its files did not decode. */
  const score = async (s: ScoreShard, job: import('bullmq').Job): Promise<ShardResult> => {
    const { model, items } = await check(s);
    const per = valuesOf(model);
    if (s.radii.length * s.draws * per * 4 > MAX_NOISE_BYTES)
      throw refuse(`${s.radii.length} radii x ${s.draws} noise draws of ${per} values: more than ${MAX_NOISE_BYTES / 2 ** 30} GiB`);
    if (s.batchSize * per * 4 > MAX_NOISE_BYTES) throw refuse(`batchSize ${s.batchSize}: too large for ${per}-value images`);
    if (s.vs.length * per * 4 > MAX_NOISE_BYTES)
      throw refuse(`${s.vs.length} perturbations of ${per} values: more than ${MAX_NOISE_BYTES / 2 ** 30} GiB`);
    const passes = s.items.length * (1 + s.vs.length + s.radii.length * s.draws);
    if (passes > MAX_SHARD_FORWARDS)
      throw refuse(
        `${passes} image forward passes in one shard: more than ${MAX_SHARD_FORWARDS} (fewer images a shard, draws or perturbations)`,
      );
    const vs: Float32Array[] = [];
    for (const sha of s.vs) vs.push(await perturbation(sha, model));
    const set = openImages(items, model.inputShape, { strict: s.strict });
    const part = await scorePart(model, set, vs, {
      radii: s.radii,
      draws: s.draws,
      noise: noiseFor(model, s),
      ranks: s.ranks,
      batchSize: s.batchSize,
      // Progress is a courtesy: Redis gone for a moment must not end the shard (its result is sent later).
      onBatch: (done) => void job.updateProgress(done).catch(() => {}),
    });
    const reasons = new Map(set.skipped.map((k) => [k.path, k.reason]));
    const kept = new Set(part.kept);
    const skipped = s.items.flatMap((_, at) =>
      kept.has(at) ? [] : [{ at, reason: scrubbed(reasons.get(itemName(set.listed[at])) ?? 'not decoded', roots) }],
    );
    return { ...part, skipped };
  };

  // Crafting images decoded once: every pass of SGD-UAP sends them again (bounded like a stream's cache).
  const decoded = new Map<string, Uint8Array>();
  const cacheBytes = defaultCacheBytes();
  const pixelsOf = async (items: ImageItem[], shape: [number, number, number]) => {
    const per = shape[0] * shape[1] * shape[2];
    const out = new Uint8Array(items.length * per);
    for (const [k, item] of items.entries()) {
      const st = statSync(item.path, { throwIfNoEntry: false });
      const key = `${itemName(item)}@${shape.join('x')}@${st?.size}:${st?.mtimeMs}`;
      let px = decoded.get(key);
      if (!px) {
        px = await decodeItem(item, shape).catch((e: Error) => {
          throw refuse(`image ${itemName(item)}: cannot be decoded here (${e.message.split('\n')[0]}), though it was on the coordinator`);
        });
        if ((decoded.size + 1) * per <= cacheBytes) decoded.set(key, px);
      }
      out.set(px, k * per);
    }
    return out;
  };

  /** A gradient shard of an SGD-UAP step: its part of the step's gradient at v. */
  const gradient = async (g: GradJob) => {
    const { model, items } = await check(g);
    if (g.labels.some((l) => l >= model.numClasses)) throw refuse(`labels: outside the model's ${model.numClasses} classes`);
    const per = valuesOf(model);
    if (items.length * per * 5 > MAX_NOISE_BYTES) throw refuse(`${items.length} images of ${per} values: too many for one gradient shard`);
    const classes = [...(g.loss.target !== undefined ? [g.loss.target] : []), ...(g.loss.classes ?? [])];
    if (classes.some((k) => k >= model.numClasses)) throw refuse(`loss: a class outside the model's ${model.numClasses} classes`);
    if (!(g.loss.beta > 0) || g.loss.kappa < 0) throw refuse('loss: expected beta > 0 and kappa >= 0');
    const v = await perturbation(g.v, model);
    const x = tf.tensor4d(await pixelsOf(items, model.inputShape), [items.length, ...model.inputShape]);
    const vt = tf.tensor3d(v, model.inputShape);
    try {
      const r = await shardGradient(model, x, vt, Int32Array.from(g.labels), g.n, g.loss);
      return { grad: toBase64(r.grad), fooled: r.fooled };
    } finally {
      tf.dispose([x, vt]);
    }
  };

  /** A whole crafting run (a point of a size sweep) on the job's X. */
  const craftRun = async (c: CraftJob): Promise<Crafted> => {
    const { model, items } = await check(c);
    let options: CraftJob['options'];
    try {
      options = methodOf(c.method).options(c.options);
      checkRadius(options, model.inputShape);
      // The schema bounds every count (passes, batch, steps), so no job runs without end.
      checkOptions(options, ['passes', c.method]);
      const rows = (options as { maxGradientRows?: unknown }).maxGradientRows;
      if (rows !== undefined) int(rows, 'options.maxGradientRows', 1, 100_000);
      const per = valuesOf(model);
      if (items.length * per > MAX_CRAFT_BYTES)
        throw new Error(`${items.length} images of ${per} values: more than the ${MAX_CRAFT_BYTES / 2 ** 30} GiB a crafting job may hold`);
    } catch (e) {
      throw refuse((e as Error).message);
    }
    const { set } = await loadImages(items, model.inputShape, { strict: c.strict });
    if (set.size !== items.length)
      throw refuse(
        `data ${c.data ?? 'default'}: ${items.length - set.size} of the job's images do not decode here, though they did on the coordinator`,
      );
    const res = await craft(model, set, c.method, options);
    try {
      return { v: toBase64(res.v.dataSync() as Float32Array), foolingRate: res.foolingRate, passes: res.passes, seconds: res.seconds };
    } finally {
      res.v.dispose();
    }
  };

  /** One job: its signature, its fields, then the work; the result signed for this very job. */
  const run = async (job: import('bullmq').Job): Promise<{ sealed: Sealed; images: number; model: string }> => {
    const name = job.name as (typeof JOB_NAMES)[number];
    if (!(JOB_NAMES as readonly string[]).includes(name)) throw refuse(`job kind ${name.slice(0, 40)}: expected ${JOB_NAMES.join(', ')}`);
    const body = openJob(o.key, name, job.data);
    if (body === null)
      throw refuse("the job is not signed with this worker's queue key (do its coordinator and this worker share UAP_QUEUE_KEY?)");
    let parsed: ScoreShard | GradJob | CraftJob;
    try {
      parsed = name === 'grad' ? parseGradJob(body) : name === 'craft' ? parseCraftJob(body, METHOD_NAMES) : parseScoreShard(body);
    } catch (e) {
      if (e instanceof JobFieldError) throw refuse(e.message);
      throw e;
    }
    const result =
      name === 'grad'
        ? await gradient(parsed as GradJob)
        : name === 'craft'
          ? await craftRun(parsed as CraftJob)
          : await score(parsed as ScoreShard, job);
    return { sealed: sealResult(o.key, job.data as Sealed, result), images: parsed.items.length, model: basename(parsed.model.spec) };
  };

  const worker = new Worker(
    QUEUE_NAME,
    async (job) => {
      const started = Date.now();
      try {
        const { sealed, images, model } = await run(job);
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
  o.log.info(
    `worker: listening on ${redacted(o.url)} (queue ${QUEUE_NAME}); models: bundled${[...allowed.map((a) => a.spec), ...folders.map((f) => `${f}/**`)].map((m) => `, ${m}`).join('')}; images in ${roots.join(', ')}`,
  );
  await new Promise<void>((done) => {
    if (o.signal?.aborted) return done();
    o.signal?.addEventListener('abort', () => done(), { once: true });
  });
  await worker.close(); // waits for the shard under way
  redis.disconnect();
  for (const m of models.values()) await m.then((x) => x.model.dispose()).catch(() => {});
}
