import { statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Classifier } from '../classifier/classifier.js';
import { loadImages, openImages } from '../data/dataset.js';
import { itemName, type ImageItem } from '../data/source.js';
import { allDraws, scorePart } from '../evaluation/noiseScore.js';
import { checkRadius, craft, methodOf, METHOD_NAMES } from '../attacks/methods.js';
import { checkOptions } from '../attacks/options.js';
import { shardGradient } from '../attacks/sgd.js';
import { dataFolder, defaultData } from '../data/sets.js';
import { decodeItem, defaultCacheBytes } from '../data/stream.js';
import { packageVersion } from '../paths.js';
import { perturbedBytes } from '../math/batch.js';
import type { ShardResult } from './coordinator.js';
import {
  SHARD_PROTOCOL,
  dataPrint,
  localItems,
  perturbationKey,
  sha256,
  toBase64,
  type CraftJob,
  type Crafted,
  type GradJob,
  type ScoreShard,
} from './shards.js';
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
import { inside, scrubbed } from './workerFiles.js';
import type { WorkerModels } from './workerModels.js';
import type { ImageShape } from '../math/imageShape.js';

/** Values of one image the model takes (height x width x channels). */
const valuesOf = (model: Classifier) => model.inputShape.reduce((a, b) => a * b, 1);

export const JOB_NAMES = ['score', 'grad', 'craft'] as const;

/** What Redis gives a worker: the perturbations its coordinator stored. */
interface PerturbationStore {
  getBuffer(key: string): Promise<Buffer | null>;
}

/**
 * One worker's work on the queue's jobs, job by job: the signature, the fields, the model and images
 * checked against the coordinator's fingerprints, then a scoring shard, a gradient shard or a crafting
 * run, its result signed for that very job. It keeps the noise draws of the scoring under way and the
 * crafting images it decoded (every pass of SGD-UAP sends them again).
 */
export class ShardWork {
  constructor(
    private readonly key: string,
    private readonly models: WorkerModels,
    private readonly assets: string,
    /** The folders whose images it may read (real paths checked before any read). */
    private readonly roots: string[],
    private readonly redis: PerturbationStore,
    /** A refusal: final (another try on this worker would refuse again). */
    private readonly refuse: (message: string) => Error,
  ) {}

  /** The noise draws of the scoring under way: the same for each of its shards (drawing them at 224x224x3 costs tens of ms). */
  private noise: { key: string; draws: Float32Array[] } | undefined;
  private noiseFor(model: Classifier, s: ScoreShard): Float32Array[] {
    const key = JSON.stringify([model.inputShape, s.radii, s.draws]);
    if (this.noise?.key !== key) this.noise = { key, draws: allDraws(model.inputShape, s) };
    return this.noise.draws;
  }

  /** The job's model and the folder of its images here, after the checks of model, folders and images. */
  private async check(
    s: Pick<ScoreShard, 'protocol' | 'uap' | 'model' | 'modelPrint' | 'modelFiles' | 'data' | 'role' | 'items' | 'dataPrint'>,
  ): Promise<{ model: Classifier; items: ImageItem[] }> {
    if (s.protocol !== SHARD_PROTOCOL)
      throw this.refuse(
        `the coordinator runs uap ${s.uap} with job format ${s.protocol}, this worker uap ${packageVersion()} with ${SHARD_PROTOCOL}: run the same uap everywhere`,
      );
    let model: Classifier;
    let print: string;
    let dir: string;
    try {
      ({ model, print } = await this.models.load(s.model, s.modelFiles));
      dir = inside(dataFolder(s.data ?? defaultData(model, this.assets)[s.role], this.assets), this.roots, 'data');
      for (const i of localItems(s.items, dir)) inside(i.path, this.roots, 'image');
      if (print !== s.modelPrint)
        throw new Error(
          `model ${basename(s.model.spec)}: its files here differ from the coordinator's (fingerprint ${print.slice(0, 12)}, expected ${s.modelPrint.slice(0, 12)})`,
        );
    } catch (e) {
      throw this.refuse((e as Error).message);
    }
    if (dataPrint(s.items, dir) !== s.dataPrint)
      throw this.refuse(`data ${s.data ?? 'default'}: the shard's images here differ from the coordinator's (names, labels or sizes)`);
    return { model, items: localItems(s.items, dir) };
  }

  /** A perturbation the coordinator put in Redis, checked against its hash and the model's size. */
  private async perturbation(sha: string, model: Classifier): Promise<Float32Array> {
    const bytes = await this.redis.getBuffer(perturbationKey(sha));
    if (!bytes || sha256(bytes) !== sha) throw this.refuse(`perturbation ${sha.slice(0, 12)}: missing or damaged in Redis`);
    const v = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    if (v.length !== valuesOf(model)) throw this.refuse(`perturbation: ${v.length} values for a ${model.inputShape.join('x')} model`);
    return v;
  }

  /** A scoring shard: its part of the figures, and which of its files did not decode. */
  private async score(s: ScoreShard, job: import('bullmq').Job): Promise<ShardResult> {
    const { model, items } = await this.check(s);
    const per = valuesOf(model);
    if (s.radii.length * s.draws * per * 4 > MAX_NOISE_BYTES)
      throw this.refuse(`${s.radii.length} radii x ${s.draws} noise draws of ${per} values: more than ${MAX_NOISE_BYTES / 2 ** 30} GiB`);
    if (s.batchSize * per * 4 > MAX_NOISE_BYTES) throw this.refuse(`batchSize ${s.batchSize}: too large for ${per}-value images`);
    if (s.vs.length * per * 4 > MAX_NOISE_BYTES)
      throw this.refuse(`${s.vs.length} perturbations of ${per} values: more than ${MAX_NOISE_BYTES / 2 ** 30} GiB`);
    const passes = s.items.length * (1 + s.vs.length + s.radii.length * s.draws);
    if (passes > MAX_SHARD_FORWARDS)
      throw this.refuse(
        `${passes} image forward passes in one shard: more than ${MAX_SHARD_FORWARDS} (fewer images a shard, draws or perturbations)`,
      );
    const vs: Float32Array[] = [];
    for (const sha of s.vs) vs.push(await this.perturbation(sha, model));
    const set = openImages(items, model.inputShape, { strict: s.strict });
    const part = await scorePart(model, set, vs, {
      radii: s.radii,
      draws: s.draws,
      noise: this.noiseFor(model, s),
      ranks: s.ranks,
      batchSize: s.batchSize,
      // Progress is a courtesy: Redis gone for a moment must not end the shard (its result is sent later).
      onBatch: (done) => void job.updateProgress(done).catch(() => {}),
    });
    const reasons = new Map(set.skipped.map((k) => [k.path, k.reason]));
    const kept = new Set(part.kept);
    const skipped = s.items.flatMap((_, at) =>
      kept.has(at) ? [] : [{ at, reason: scrubbed(reasons.get(itemName(set.listed[at])) ?? 'not decoded', this.roots) }],
    );
    return { ...part, skipped };
  }

  /** Crafting images decoded once: every pass of SGD-UAP sends them again (bounded like a stream's cache). */
  private readonly decoded = new Map<string, Uint8Array>();
  private readonly cacheBytes = defaultCacheBytes();
  private async pixelsOf(items: ImageItem[], shape: ImageShape): Promise<Uint8Array> {
    const per = shape[0] * shape[1] * shape[2];
    const out = new Uint8Array(items.length * per);
    for (const [k, item] of items.entries()) {
      const st = statSync(item.path, { throwIfNoEntry: false });
      const key = `${itemName(item)}@${shape.join('x')}@${st?.size}:${st?.mtimeMs}`;
      let px = this.decoded.get(key);
      if (!px) {
        px = await decodeItem(item, shape).catch((e: Error) => {
          throw this.refuse(
            `image ${itemName(item)}: cannot be decoded here (${e.message.split('\n')[0]}), though it was on the coordinator`,
          );
        });
        if ((this.decoded.size + 1) * per <= this.cacheBytes) this.decoded.set(key, px);
      }
      out.set(px, k * per);
    }
    return out;
  }

  /** A gradient shard of an SGD-UAP step: its part of the step's gradient at v. */
  private async gradient(g: GradJob): Promise<{ grad: string; fooled: number }> {
    const { model, items } = await this.check(g);
    if (g.labels.some((l) => l >= model.numClasses)) throw this.refuse(`labels: outside the model's ${model.numClasses} classes`);
    const per = valuesOf(model);
    if (items.length * per * 5 > MAX_NOISE_BYTES)
      throw this.refuse(`${items.length} images of ${per} values: too many for one gradient shard`);
    const classes = [...(g.loss.target !== undefined ? [g.loss.target] : []), ...(g.loss.classes ?? [])];
    if (classes.some((k) => k >= model.numClasses)) throw this.refuse(`loss: a class outside the model's ${model.numClasses} classes`);
    if (!(g.loss.beta > 0) || g.loss.kappa < 0) throw this.refuse('loss: expected beta > 0 and kappa >= 0');
    const v = await this.perturbation(g.v, model);
    const x = perturbedBytes(await this.pixelsOf(items, model.inputShape), model.inputShape, null);
    const r = await shardGradient(model, x, v, Int32Array.from(g.labels), g.n, g.loss);
    return { grad: toBase64(r.grad), fooled: r.fooled };
  }

  /** A whole crafting run (a point of a size sweep) on the job's X. */
  private async craft(c: CraftJob): Promise<Crafted> {
    const { model, items } = await this.check(c);
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
      throw this.refuse((e as Error).message);
    }
    const { set } = await loadImages(items, model.inputShape, { strict: c.strict });
    if (set.size !== items.length)
      throw this.refuse(
        `data ${c.data ?? 'default'}: ${items.length - set.size} of the job's images do not decode here, though they did on the coordinator`,
      );
    const res = await craft(model, set, c.method, options);
    try {
      return { v: toBase64(res.v.dataSync() as Float32Array), foolingRate: res.foolingRate, passes: res.passes, seconds: res.seconds };
    } finally {
      res.v.dispose();
    }
  }

  /** One job: its signature, its fields, then the work; the result signed for this very job. */
  async run(job: import('bullmq').Job): Promise<{ sealed: Sealed; images: number; model: string }> {
    const name = job.name as (typeof JOB_NAMES)[number];
    if (!(JOB_NAMES as readonly string[]).includes(name))
      throw this.refuse(`job kind ${name.slice(0, 40)}: expected ${JOB_NAMES.join(', ')}`);
    const body = openJob(this.key, name, job.data);
    if (body === null)
      throw this.refuse("the job is not signed with this worker's queue key (do its coordinator and this worker share UAP_QUEUE_KEY?)");
    let parsed: ScoreShard | GradJob | CraftJob;
    try {
      parsed = name === 'grad' ? parseGradJob(body) : name === 'craft' ? parseCraftJob(body, METHOD_NAMES) : parseScoreShard(body);
    } catch (e) {
      if (e instanceof JobFieldError) throw this.refuse(e.message);
      throw e;
    }
    const result =
      name === 'grad'
        ? await this.gradient(parsed as GradJob)
        : name === 'craft'
          ? await this.craft(parsed as CraftJob)
          : await this.score(parsed as ScoreShard, job);
    return { sealed: sealResult(this.key, job.data as Sealed, result), images: parsed.items.length, model: basename(parsed.model.spec) };
  }
}
