import type { Classifier } from '../classifier/classifier.js';
import type { StreamedImages } from '../data/stream.js';
import type { ImageSet } from '../data/imageSet.js';
import { joinLabels, joinParts, type NoiseScoreOptions, type ScorePart } from '../evaluation/noiseScore.js';
import type { GradientShard, ShardGradient, ShardGradients, SgdLossOptions } from '../attacks/sgd.js';
import type { CraftRuns, CraftedRun, Executor, OnSet, SetPlace, WorkerModel } from '../run/executor.js';
import { localExecutor } from '../run/executor.js';
import type { ImageSource } from '../data/source.js';
import { UsageError, printable } from '../errors.js';
import { scoringBatch } from '../evaluation/scoring.js';
import { packageVersion } from '../paths.js';
import { connected, queueConnection, QUEUE_NAME, redacted } from './connection.js';
import { jobId, openResult, sealJob } from './signing.js';
import { jobCard } from './jobFields.js';
import {
  SHARD_PROTOCOL,
  dataPrint,
  fromBase64,
  modelPrints,
  perturbationKey,
  planShards,
  sha256,
  shardItems,
  type CraftJob,
  type Crafted,
  type GradJob,
  type ScoreShard,
} from './shards.js';
import type { Method } from '../attacks/methods.js';

/**
 * The coordinator's side of distributed work: cut it into shards, queue them on BullMQ (the engine
 * re-delivers the shard of a worker that dies), follow their progress, and take their results in
 * shard order, which gives the local run's figures exactly.
 */

/** A job's queue option: a BullMQ queue (redis:// URL) of `uap worker`s, its shared key, and images per shard. */
export interface QueueOption {
  url: string;
  /** The queue's shared key (signing.ts: queueKey): jobs are signed with it, results without its signature refused. */
  key: string;
  /** Images per shard (rounded up to whole batches; default 512). */
  shardSize?: number;
}

/** What a worker returns for a scoring shard: its part, and the positions (in the shard) of files that did not decode. */
export interface ShardResult extends ScorePart {
  skipped: { at: number; reason: string }[];
}

const PROTOCOL = { protocol: SHARD_PROTOCOL, uap: packageVersion() };

/** The model as a job names it: the name, and only the card fields a worker takes from a job. */
function jobModel(m: WorkerModel): ScoreShard['model'] {
  const card = jobCard(m.card);
  return { spec: m.spec, ...(card ? { card } : {}) };
}

/** Seconds a shard's result stays in Redis: a coordinator restarted within it (or the same command rerun) takes it as it is. */
const KEEP_SECONDS = 24 * 3600;

/** One connection to the queue for the life of a command: put perturbations, run batches of jobs. */
export class QueueSession {
  private constructor(
    private readonly url: string,
    private readonly key: string,
    private readonly queue: import('bullmq').Queue,
    private readonly events: import('bullmq').QueueEvents,
    private readonly redis: import('ioredis').Redis,
  ) {}

  static async open(url: string, key: string, warn?: (message: string) => void): Promise<QueueSession> {
    const connection = queueConnection(url);
    const { Queue, QueueEvents } = await import('bullmq');
    const { Redis } = await import('ioredis');
    const queue = new Queue(QUEUE_NAME, { connection });
    const events = new QueueEvents(QUEUE_NAME, { connection });
    const redis = new Redis(url, { maxRetriesPerRequest: 3, lazyConnect: true, ...(connection.tls ? { tls: {} } : {}) });
    redis.on('error', () => {}); // failures reach the commands that meet them
    const session = new QueueSession(url, key, queue, events, redis);
    try {
      await Promise.all([
        connected(queue, url, { onError: (e) => warn?.(`queue ${redacted(url)}: ${e.message}`) }),
        connected(events, url, { onError: () => {} }),
      ]);
      await redis.connect().catch((e: Error) => {
        throw new UsageError(`{queue} ${redacted(url)}: cannot connect (${e.message})`);
      });
    } catch (e) {
      await session.close();
      throw e;
    }
    if ((await queue.getWorkersCount()) === 0)
      warn?.(`queue ${redacted(url)}: no uap worker is listening yet; the work waits until one starts (uap worker {queue} URL)`);
    return session;
  }

  /** Stores a perturbation for the workers (by its hash, for `seconds`); gives the hash that jobs name. */
  async put(v: Float32Array, seconds = KEEP_SECONDS): Promise<string> {
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const sha = sha256(bytes);
    // Counted: two runs at once may store the same v (v = 0 at a first step); the last drop deletes it.
    await this.redis
      .multi()
      .set(perturbationKey(sha), Buffer.from(bytes), 'EX', seconds)
      .incr(`${perturbationKey(sha)}:users`)
      .expire(`${perturbationKey(sha)}:users`, seconds)
      .exec();
    return sha;
  }

  async drop(sha: string): Promise<void> {
    const users = await this.redis.decr(`${perturbationKey(sha)}:users`);
    if (users <= 0) await this.redis.del(perturbationKey(sha), `${perturbationKey(sha)}:users`);
  }

  /**
   * Runs jobs named `name` on the workers and gives their results in order. Each job is signed with
   * the key and its id derives from that signature: queued twice, it runs once (a rerun, or a
   * coordinator restarted, takes the result), and no one without the key can plant one under it. A
   * result is taken only with a worker's signature for that very job: one without it (a rogue or
   * misconfigured worker) ends the run with an error, and is removed so that a rerun computes it.
   */
  async run<R>(name: string, jobs: object[], what: (i: number) => string, onProgress?: (i: number, data: number) => void): Promise<R[]> {
    const sealed = jobs.map((data) => sealJob(this.key, name, data));
    const ids = sealed.map((s, i) => jobId(this.key, name, s, i));
    const opened = (i: number, value: unknown): R | null => {
      const body = openResult(this.key, sealed[i], value);
      return body === null ? null : (JSON.parse(body) as R);
    };
    for (const [i, id] of ids.entries()) {
      const old = await this.queue.getJob(id);
      if (!old) continue;
      // A failure of an earlier try is not this run's result; neither is a result no worker of this key signed.
      if ((await old.isFailed()) || ((await old.isCompleted()) && opened(i, old.returnvalue) === null)) await old.remove();
    }
    const index = new Map(ids.map((id, i) => [id, i]));
    const listener = ({ jobId, data }: { jobId: string; data: unknown }) => {
      const i = index.get(jobId);
      if (i !== undefined && typeof data === 'number' && Number.isFinite(data)) onProgress?.(i, data);
    };
    if (onProgress) this.events.on('progress', listener);
    // Redis restarted without its data loses queued jobs, and nothing would ever finish them: checked
    // every few seconds, and said (while Redis is down, the check waits for it, as the jobs do).
    const pending = new Set(ids);
    let watchdog: NodeJS.Timeout | undefined;
    const lost = new Promise<never>((_, reject) => {
      watchdog = setInterval(() => {
        void (async () => {
          for (const id of pending) {
            const job = await this.queue.getJob(id).catch(() => null);
            if (job === undefined && pending.has(id))
              reject(
                new UsageError(
                  `queue ${redacted(this.url)}: Redis lost the queued work (restarted without its data?); run the command again`,
                ),
              );
          }
        })();
      }, 5000);
      watchdog.unref();
    });
    lost.catch(() => {});
    try {
      const added = await this.queue.addBulk(
        sealed.map((data, i) => ({
          name,
          data,
          opts: {
            jobId: ids[i],
            attempts: 3,
            backoff: { type: 'exponential', delay: 1000 },
            removeOnComplete: { age: KEEP_SECONDS },
            removeOnFail: { age: KEEP_SECONDS },
            stackTraceLimit: 0,
          },
        })),
      );
      const all = Promise.all(
        added.map(async (job, i) => {
          let value: unknown;
          try {
            value = await job.waitUntilFinished(this.events);
          } catch (e) {
            throw new UsageError(`queue: ${what(i)} failed on a worker: ${printable((e as Error).message.split('\n')[0].slice(0, 600))}`);
          }
          pending.delete(ids[i]);
          const r = opened(i, value);
          if (r === null) {
            await job.remove().catch(() => {});
            throw new UsageError(
              `queue: the result of ${what(i)} does not carry a signature of this queue's key: a worker without the key (a rogue or misconfigured one) answered; nothing of it was used (find that worker; the job is removed, so a rerun computes it again)`,
            );
          }
          return r;
        }),
      );
      return await Promise.race([all, lost]);
    } finally {
      clearInterval(watchdog);
      this.events.off('progress', listener);
    }
  }

  async close(): Promise<void> {
    // Closing waits for Redis; when it is gone, that would be forever.
    await Promise.race([Promise.allSettled([this.events.close(), this.queue.close()]), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.redis.disconnect();
  }
}

/** A set a worker can find: it has a place, and its images are files listed on disk (not images in memory). */
type Placed<S extends ImageSource = StreamedImages> = OnSet<S> & { place: SetPlace };
const placed = (on: OnSet): on is Placed => on.place !== undefined && 'listed' in on.set;

/**
 * The work of a job on the queue's workers, in shards, over one connection for the life of the job
 * (opened by its first piece of work, ended by `close`). A set that no worker could find (no place, or
 * images in memory) is scored here.
 */
export function queueExecutor(q: QueueOption, log: { warn: (message: string) => void }): Executor {
  let opening: Promise<QueueSession> | undefined;
  // A model's files are hashed once per job, not once per piece of work (a job scores and crafts on one model).
  const prints = new WeakMap<Classifier, ReturnType<typeof modelPrints>>();
  const printsOf = (model: Classifier) => prints.get(model) ?? prints.set(model, modelPrints(model)).get(model)!;
  const link = async (): Promise<QueueLink> => ({
    session: await (opening ??= QueueSession.open(q.url, q.key, (m) => log.warn(m))),
    q,
    printsOf,
  });
  return {
    where: "the queue's workers",
    async labels(on, vs, o = {}) {
      if (!placed(on)) return localExecutor.labels(on, vs, o);
      return joinLabels((await queueParts(await link(), on, vs, { ...o, radii: [], draws: 0 })).parts);
    },
    async score(on, v, o) {
      if (!placed(on)) return localExecutor.score(on, v, o);
      const { ranges, parts } = await queueParts(await link(), on, [v], o);
      return joinParts(on.set.listed, ranges, parts, o);
    },
    async ranks(on, o = {}) {
      if (!placed(on)) return localExecutor.ranks(on, o);
      const { parts } = await queueParts(await link(), on, [], { ...o, radii: [], draws: 0, ranks: true });
      return parts.flatMap((p) => p.ranks ?? []);
    },
    async craft(on, runs, method, o = {}) {
      if (!on.place) return localExecutor.craft(on, runs, method, o);
      const made = await craftOnQueue(await link(), on.model, on.place, runs, method);
      made.forEach((r, i) => o.onRun?.(i, r));
      return made;
    },
    async gradients(on, loss) {
      if (!on.place) return undefined;
      return queueGradients(await link(), on as Placed<ImageSet>, loss);
    },
    async close() {
      await opening?.then(
        (s) => s.close(),
        () => {}, // it never opened: its error reached the work that asked
      );
    },
  };
}

/** Where a job's work runs: on the queue's workers when it names a queue, else here. */
export function executorFor(queue: QueueOption | undefined, log: { warn: (message: string) => void }): Executor {
  return queue ? queueExecutor(queue, log) : localExecutor;
}

/** Runs `use` with the job's executor, and closes it after. */
export async function withExecutor<T>(
  queue: QueueOption | undefined,
  log: { warn: (message: string) => void },
  use: (exec: Executor) => Promise<T>,
): Promise<T> {
  const exec = executorFor(queue, log);
  try {
    return await use(exec);
  } finally {
    await exec.close();
  }
}

/** What the queue work of one job shares: its session, the queue option, each model's fingerprints (hashed once). */
interface QueueLink {
  session: QueueSession;
  q: QueueOption;
  printsOf: (model: Classifier) => ReturnType<typeof modelPrints>;
}

/** The fields every job of one model and set carries: the model as named and fingerprinted, the set's place. */
async function jobBase(link: QueueLink, model: Classifier, place: SetPlace) {
  const { print: modelPrint, files: modelFiles } = await link.printsOf(model);
  return {
    ...PROTOCOL,
    model: jobModel(place.model),
    ...(modelFiles ? { modelFiles } : {}),
    modelPrint,
    data: place.data,
    role: place.role,
  };
}

/** Queues the shards of scoring the set with `vs` (and noise), follows them, and gives their parts in shard order. */
async function queueParts(
  link: QueueLink,
  { model, set, place }: Placed,
  vs: Float32Array[],
  o: NoiseScoreOptions,
): Promise<{ ranges: { start: number; end: number }[]; parts: ShardResult[] }> {
  const shas: string[] = [];
  for (const v of vs) shas.push(await link.session.put(v));
  // A shard is whole batches: a default batch bigger than the shard size asked for gives way to it.
  const shardSize = link.q.shardSize ?? 512;
  const batchSize = scoringBatch(model, o.batchSize ?? Math.min(scoringBatch(model), shardSize));
  const ranges = planShards(set.listed.length, shardSize, batchSize);
  const base = await jobBase(link, model, place);
  const shards: ScoreShard[] = ranges.map((r) => {
    const items = shardItems(set.listed.slice(r.start, r.end), place.dir);
    return {
      ...base,
      items,
      dataPrint: dataPrint(items, place.dir),
      vs: shas,
      radii: o.radii,
      draws: o.draws,
      batchSize,
      strict: place.strict ?? false,
      ...(o.ranks ? { ranks: true } : {}),
    };
  });
  const done = new Array<number>(shards.length).fill(0);
  const tell = () => o.onBatch?.(done.reduce((a, b) => a + b, 0));
  const parts = await link.session.run<ShardResult>(
    'score',
    shards,
    (i) => `shard ${i + 1} of ${shards.length} (images ${ranges[i].start + 1}-${ranges[i].end})`,
    (i, n) => {
      done[i] = n;
      tell();
    },
  );
  parts.forEach((p, s) => p.skipped.forEach((k) => set.markUnreadable(ranges[s].start + k.at, k.reason)));
  return { ranges, parts };
}

/**
 * SGD-UAP data-parallel: each step's gradient shards go to the workers at the same v, their
 * gradients come back in order and the step adds them as the local run does (sgd.ts: sumShards).
 */
async function queueGradients(link: QueueLink, { model, set: X, place }: Placed<ImageSet>, loss: SgdLossOptions): Promise<ShardGradients> {
  const base = await jobBase(link, model, place);
  // The loss settings alone (the caller may pass all of SGD's options): a worker refuses any other field.
  const lossFields: SgdLossOptions = {
    loss: loss.loss,
    beta: loss.beta,
    kappa: loss.kappa,
    ...(loss.target !== undefined ? { target: loss.target } : {}),
    ...(loss.classes !== undefined ? { classes: loss.classes } : {}),
  };
  let step = 0;
  return async (v, shards: GradientShard[], n) => {
    step++;
    const sha = await link.session.put(v);
    try {
      const jobs: GradJob[] = shards.map((s) => {
        const items = shardItems(
          s.idx.map((i) => X.items[i]),
          place.dir,
        );
        return { ...base, items, dataPrint: dataPrint(items, place.dir), v: sha, labels: Array.from(s.labels), n, loss: lossFields };
      });
      const got = await link.session.run<{ grad: string; fooled: number }>(
        'grad',
        jobs,
        (i) => `gradient shard ${i + 1} of ${jobs.length} of step ${step}`,
      );
      return got.map((g): ShardGradient => ({ grad: fromBase64(g.grad), fooled: g.fooled }));
    } finally {
      await link.session.drop(sha); // a new v every step: keep Redis from filling with old ones
    }
  };
}

/**
 * Whole crafting runs on the workers, all queued at once (the points of a size sweep, the members of
 * a defence pool): each on its own X with its own settings; v and the run's figures come back in order.
 */
async function craftOnQueue(link: QueueLink, model: Classifier, place: SetPlace, runs: CraftRuns, method: Method): Promise<CraftedRun[]> {
  const base = await jobBase(link, model, place);
  const jobs: CraftJob[] = runs.map(({ X, options }) => {
    const items = shardItems(X.items, place.dir);
    return { ...base, items, dataPrint: dataPrint(items, place.dir), strict: place.strict ?? false, method, options };
  });
  const got = await link.session.run<Crafted>('craft', jobs, (i) => `crafting run ${i + 1} of ${jobs.length} (|X| = ${runs[i].X.size})`);
  return got.map((c) => ({ ...c, v: fromBase64(c.v) }));
}
