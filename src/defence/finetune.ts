import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '../tf.js';
import { UsageError, AbortedError } from '../errors.js';
import type { Classifier } from '../model/classifier.js';
import { findCard, type CardOverrides, type ModelSpec } from '../model/load.js';
import type { ModelCard } from '../model/card.js';
import type { ImageSet } from '../data/dataset.js';
import { argmaxRows } from '../model/compute.js';
import { evaluatePerturbation, foolingRate, predictSet, type Evaluation } from '../model/scoring.js';
import type { AttackSettings } from '../attacks/methods.js';
import { Rng, passSeed } from '../math/random.js';
import { writeNpy } from '../io/npy.js';
import { writeJson, writePerturbation, writeText } from '../io/run.js';
import { assetsDir } from '../paths.js';
import { methodName, pct } from '../report/format.js';
import { craft, methodOptions, type Method } from '../attacks/methods.js';
import { dataFolder, defaultData, loadSet, type DataSpec } from '../data/sets.js';
import { loadModel } from '../model/load.js';
import { loadPerturbation, OWN_FORMAT } from '../io/perturbationFile.js';
import { namedLog, type Log } from '../log.js';
import { drawPerturbations, applyDraws, SAMPLING_DEFAULTS, type SamplingOptions } from './sampling.js';
import { uatEpoch } from './uat.js';
import { loadTrainable, refuseUntrainable, saveTrainable, snapshotWeights, restoreWeights, type Trainable } from './trainable.js';

/**
 * The paper's defence (section 5): fine-tune the network on images perturbed by a pool of
 * precomputed universal perturbations, then attack it afresh; repeat for several rounds.
 */

export interface FinetuneOptions {
  /**
   * 'pool': the paper's fine-tuning on a pool of universal perturbations crafted before each round;
   * 'uat': universal adversarial training (Shafahi et al.), one perturbation trained with the weights.
   */
  defence: 'pool' | 'uat';
  /** uat: length of the perturbation's ascent step per minibatch, in the ball's norm (default xi / 5). */
  uatStep?: number;
  /** Fine-tune / re-attack rounds (the paper: fooling rate falls in round 1, little more after). */
  rounds: number;
  /** Universal perturbations precomputed per round for training. */
  poolSize: number;
  epochs: number;
  batchSize: number;
  /** Adam learning rate (an epoch that costs more than maxAccuracyDrop is retried at a tenth of it, twice at most). */
  learningRate: number;
  sampling: SamplingOptions;
  /** Largest fall of clean validation accuracy (0.05 = 5 points) below the original model's; an epoch past it is undone. */
  maxAccuracyDrop: number;
  /**
   * What the network is trained to answer: 'model' (its own clean top-1 label of each image: the
   * perturbed image must get the label the clean one got, i.e. invariance) or 'truth' (the data's
   * labels, as the paper on the full ImageNet training set). With a few hundred images, 'truth'
   * pulls the network toward memorising them and costs clean accuracy.
   */
  trainLabels: 'model' | 'truth';
  seed: number;
}

/** Fine-tuning's defaults: the pool defence, one round of 10 perturbations, 3 epochs, and an accuracy guard of 5 points. */
export const FINETUNE_DEFAULTS: FinetuneOptions = {
  defence: 'pool', rounds: 1, poolSize: 10, epochs: 3, batchSize: 32, learningRate: 1e-4, sampling: SAMPLING_DEFAULTS, maxAccuracyDrop: 0.05, trainLabels: 'model', seed: 0,
};

/** A fine-tuning job: the model (a name or file) and its data, the attack that crafts the pools and re-attacks, the options, the output folder, and whether to resume there. */
export interface FinetuneJob extends DataSpec, ModelSpec {
  out: string;
  /** How the pool members and the re-attacks are crafted (default sgd: fast and strong). */
  method?: Method;
  attack?: Partial<AttackSettings>;
  options?: Partial<FinetuneOptions>;
  resume?: boolean;
}

/** Whole crafting runs elsewhere (on workers), all at once, from the model as named on disk; v in order, the same as here. */
export type RemoteCraft = (req: {
  model: Classifier;
  spec: { spec: string; card?: CardOverrides };
  data: string | null;
  folder: string;
  strict?: boolean;
  runs: { X: ImageSet; options: AttackSettings }[];
  method: Method;
}) => Promise<{ v: Float32Array }[]>;

/** One training epoch: learning rate, loss, clean validation accuracy, the pool's fooling rate, time, and whether the accuracy guard undid it. */
export interface EpochRecord {
  epoch: number;
  learningRate: number;
  /** Mean training cross-entropy over the epoch. */
  loss: number;
  /** Clean top-1 accuracy on the validation images after the epoch. */
  cleanAccuracy: number;
  /** Fooling rate on the validation images of the pool's perturbations (image i gets member i mod P). */
  poolFoolingRate: number;
  seconds: number;
  /** False for an epoch undone because clean accuracy fell too far. */
  kept: boolean;
}

/** One round of fine-tuning (round 0: the original model): clean accuracy, a fresh perturbation's fooling rate, the previous round's perturbation on it, and its epochs. */
export interface RoundRecord {
  /** 0: the original model. */
  round: number;
  /** The model this row measures: the --model given (round 0), else the card file of the fine-tuned model. */
  card: string;
  cleanAccuracy: number;
  /** A fresh universal perturbation crafted on this round's model: fooling rate on the validation images. */
  foolingRate: number;
  foolingRateOnX: number;
  /** The previous round's perturbation on this model (does the old attack still work?). */
  previousFoolingRate: number | null;
  epochs: EpochRecord[];
  seconds: number;
}

/** What fine-tuning gives: its configuration, one record per round (round 0 is the original model), and the output folder. */
export interface DefenceResult {
  config: Record<string, unknown>;
  rounds: RoundRecord[];
  out: string;
}

export interface FinetuneControl {
  log?: Log;
  /** Training progress inside an epoch. */
  onBatch?: (p: { round: number; epoch: number; epochs: number; done: number; total: number; loss: number }) => void;
  onEpoch?: (round: number, e: EpochRecord) => void;
  signal?: AbortSignal;
  /** Craft each round's pool members elsewhere (uap worker), all at once. */
  remoteCraft?: RemoteCraft;
}


/** The perturbation universal adversarial training keeps beside the weights, in a round's model folder. */
const UAT_DELTA = 'uat-perturbation.npy';

/** Retries of an undone epoch at a tenth of the learning rate, per round. */
const MAX_BACKOFFS = 2;

function validate(o: FinetuneOptions): void {
  const bad = (flag: string, what: string) => {
    throw new UsageError(`{${flag}}: expected ${what}`);
  };
  if (!Number.isInteger(o.rounds) || o.rounds < 1) bad('rounds', 'an integer >= 1');
  if (!Number.isInteger(o.poolSize) || o.poolSize < 1) bad('poolSize', 'an integer >= 1');
  if (!Number.isInteger(o.epochs) || o.epochs < 1) bad('epochs', 'an integer >= 1');
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) bad('batchSize', 'an integer >= 1');
  if (!(o.learningRate > 0)) bad('learningRate', 'a positive number');
  if (!(o.sampling.probability >= 0 && o.sampling.probability <= 1)) bad('perturbProbability', 'a number in [0, 1]');
  const [lo, hi] = o.sampling.scale;
  if (!(lo >= 0 && hi >= lo)) bad('magnitude', 'LO,HI with 0 <= LO <= HI');
  if (!(o.maxAccuracyDrop >= 0 && o.maxAccuracyDrop <= 1)) bad('maxAccuracyDrop', 'a number in [0, 1]');
  if (o.trainLabels !== 'model' && o.trainLabels !== 'truth') bad('trainLabels', 'model or truth');
  if (o.defence !== 'pool' && o.defence !== 'uat') bad('defence', 'pool or uat');
  if (o.uatStep !== undefined && !(o.uatStep > 0 && Number.isFinite(o.uatStep))) bad('uatStep', 'a positive number');
}

/** Clean top-1 accuracy of the model being trained, and the pool's fooling rate, on a labelled set (TF.js forward passes). */
async function trainingCheck(t: Trainable, V: ImageSet, pool: tf.Tensor4D, batch: number): Promise<{ accuracy: number; poolFoolingRate: number }> {
  const labels = V.labels!;
  const clean = new Int32Array(V.size);
  const adv = new Int32Array(V.size);
  for (const idx of V.batchIndices(batch)) {
    const draws = idx.map((i) => ({ member: i % pool.shape[0], scale: 1 }));
    const [c, a] = tf.tidy(() => {
      const x = V.batch(idx);
      return [t.logits(x), t.logits(applyDraws(x, pool, draws))];
    });
    clean.set(argmaxRows((await c.data()) as Float32Array, t.numClasses), idx[0]);
    adv.set(argmaxRows((await a.data()) as Float32Array, t.numClasses), idx[0]);
    tf.dispose([c, a]);
  }
  return { accuracy: clean.reduce((n, p, i) => n + (p === labels[i] ? 1 : 0), 0) / V.size, poolFoolingRate: foolingRate(clean, adv) };
}

/** One epoch over X: shuffled minibatches, half the images (by default) perturbed by a scaled pool member. */
async function trainEpoch(
  t: Trainable, X: ImageSet, targets: Int32Array, pool: tf.Tensor4D, o: FinetuneOptions, optimizer: tf.Optimizer, seed: number,
  progress: (done: number, loss: number) => void, signal?: AbortSignal,
): Promise<number> {
  const rng = new Rng(seed);
  const order = rng.permutation(X.size);
  let lossSum = 0;
  for (let s = 0; s < X.size; s += o.batchSize) {
    if (signal?.aborted) throw new AbortedError('fine-tuning interrupted; rerun with {resume} to continue from the last saved epoch');
    const idx = order.slice(s, s + o.batchSize);
    const draws = drawPerturbations(idx.length, pool.shape[0], rng, o.sampling);
    const x = tf.tidy(() => applyDraws(X.batch(idx), pool, draws));
    const y = tf.tidy(() => tf.oneHot(tf.tensor1d(idx.map((i) => targets[i]), 'int32'), t.numClasses));
    const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, t.logits(x)) as tf.Scalar, true, t.variables);
    lossSum += (await cost!.data())[0] * idx.length;
    tf.dispose([x, y, cost!]);
    progress(Math.min(s + o.batchSize, X.size), lossSum / Math.min(s + o.batchSize, X.size));
    await new Promise((r) => setTimeout(r, 0)); // lets Ctrl-C through
  }
  return lossSum / X.size;
}

function readJsonIf<T>(file: string): T | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : undefined;
}

/**
 * `uap finetune`: measure the original model (clean accuracy, a fresh UAP's fooling rate), then per
 * round: craft the pool on the current model, fine-tune it, save it (TF.js model + card), attack it
 * afresh. Every stage is written as it completes; --resume skips what is done (training restarts
 * from the last saved epoch, with fresh optimiser moments).
 */
export async function runFinetune(job: FinetuneJob, ctl: FinetuneControl = {}): Promise<DefenceResult> {
  const log = namedLog(ctl.log);
  const o: FinetuneOptions = { ...FINETUNE_DEFAULTS, ...job.options, sampling: { ...FINETUNE_DEFAULTS.sampling, ...job.options?.sampling } };
  validate(o);
  if (existsSync(job.out) && !statSync(job.out).isDirectory()) throw new UsageError(`{out} ${job.out}: is a file, expected a folder for the run`);
  const assets = assetsDir(job.assets);
  const originalCard = findCard(job.model, job.card, assets);
  refuseUntrainable(originalCard); // before any crafting: say it at once
  if (job.val === 'none') throw new UsageError('{val} none: fine-tuning needs validation images to keep clean accuracy in view');
  if (job.resume && !existsSync(join(job.out, 'defence.json'))) throw new UsageError(`{resume}: no defence.json in ${job.out}`);
  const method = job.method ?? 'sgd';
  let model: Classifier = await loadModel(job.model, { assets, card: job.card, engine: job.engine }, log);
  const release: tf.Tensor[] = [];
  try {
    const defaults = defaultData(model, assets);
    const sample = (count: number | undefined) => (count === undefined ? undefined : { count, seed: o.seed });
    const xDir = dataFolder(job.data ?? defaults.data, assets);
    const X = await loadSet(model, job.data ?? defaults.data, { labels: job.labels, limit: job.limit, sample: sample(job.sample), strict: job.strict, assets, log, what: 'training / crafting set X' });
    const V = await loadSet(model, job.val ?? defaults.val, { labels: job.valLabels, limit: job.valLimit, sample: sample(job.valSample), strict: job.strict, assets, log, what: 'validation set' });
    if (!V.labels) throw new UsageError(`validation set ${job.val ?? defaults.val}: fine-tuning needs labelled validation images (to track clean accuracy)`);
    const attack = methodOptions(method, model, job.attack ?? {});
    const config = {
      model: originalCard.name, modelSpec: existsSync(job.model) ? resolve(job.model) : job.model, data: job.data ?? defaults.data, val: job.val ?? defaults.val,
      images: X.size, valImages: V.size, method, attack, finetune: o,
    };
    const stateFile = join(job.out, 'defence.json');
    const previous = job.resume ? readJsonIf<DefenceResult>(stateFile) : undefined;
    if (previous && JSON.stringify(previous.config) !== JSON.stringify(config))
      throw new UsageError(`{resume}: ${stateFile} was made with other settings (model, data or options differ); use another {out} or the same flags`);
    if (!job.resume) {
      // A fresh run must not pick up another run's pools, epochs or models from the same folder.
      const stale = existsSync(job.out) ? readdirSync(job.out).filter((f) => /^round-\d+$/.test(f) || ['defence.json', 'defence.md', 'report.html'].includes(f)) : [];
      if (stale.length) log.warn(`{out} ${job.out}: replacing the defence run there (${stale.length} entries; {resume} continues it instead)`);
      for (const f of stale) rmSync(join(job.out, f), { recursive: true, force: true });
      writeJson(join(job.out, 'config.json'), config);
    }
    const rounds: RoundRecord[] = previous?.rounds ?? [];
    const save = () => {
      writeJson(stateFile, { config, rounds, out: job.out });
      writeText(join(job.out, 'defence.md'), defenceMarkdown({ config, rounds, out: job.out }));
    };
    let targets = o.trainLabels === 'truth' ? X.labels : undefined;
    if (!targets) {
      if (o.trainLabels === 'truth') log.warn('training set X has no labels: fine-tuning towards the original model\'s own clean predictions');
      targets = await predictSet(model, X, null);
    }

    /** A fresh UAP on the current model (same seed every round), evaluated on V; written to round-r/attack. */
    const attackRound = async (r: number, card: string, previousV: tf.Tensor3D | null, epochs: EpochRecord[], started: number) => {
      const dir = join(job.out, `round-${r}`, 'attack');
      log.info(`round ${r}: attacking ${r === 0 ? 'the original model' : 'the fine-tuned model'} (${methodName({ method, inner: 'inner' in attack ? attack.inner : undefined })}, ${attack.norm === 2 ? 'L2' : 'Linf'} xi=${attack.xi})`);
      const res = await craft(model, X, method, attack, { signal: ctl.signal });
      const onVal: Evaluation = await evaluatePerturbation(model, V, res.v);
      const onX = await evaluatePerturbation(model, X, res.v, { cleanPred: res.cleanPred });
      const prev = previousV ? (await evaluatePerturbation(model, V, previousV, { cleanPred: onVal.cleanPred })).foolingRate : null;
      await writePerturbation(dir, res.v);
      const row: RoundRecord = {
        round: r, card, cleanAccuracy: onVal.cleanAccuracy!, foolingRate: onVal.foolingRate, foolingRateOnX: onX.foolingRate, previousFoolingRate: prev, epochs,
        seconds: (Date.now() - started) / 1000,
      };
      res.v.dispose();
      rounds.push(row);
      save();
      log.info(`round ${r}: clean accuracy ${pct(row.cleanAccuracy)}, fresh UAP fools ${pct(row.foolingRate)} of the validation images` +
        (prev !== null ? `; the previous round's UAP now fools ${pct(prev)}` : ''));
    };

    if (rounds.length === 0) await attackRound(0, job.model, null, [], Date.now());
    const baseline = rounds[0].cleanAccuracy;
    let currentCard: ModelCard = rounds.length > 1 ? findCard(rounds[rounds.length - 1].card) : originalCard;
    // The current model as a worker loads it: the --model given, then each round's saved card.
    let currentSpec: { spec: string; card?: CardOverrides } = { spec: job.model, card: job.card };
    if (rounds.length > 1) {
      model.dispose();
      model = await loadModel(rounds[rounds.length - 1].card, { assets, engine: job.engine }, log);
      currentSpec = { spec: rounds[rounds.length - 1].card };
    }
    for (let r = rounds.length; r <= o.rounds; r++) {
      const started = Date.now();
      const roundDir = join(job.out, `round-${r}`);
      // The pool: universal perturbations of the current model, each from its own seed.
      const members: tf.Tensor3D[] = [];
      let pool: tf.Tensor4D;
      const modelDir = join(roundDir, 'model');
      const nextDir = `${modelDir}.next`;
      // A kill between removing the old model folder and renaming the new one leaves only the new one.
      if (existsSync(nextDir) && !existsSync(modelDir)) renameSync(nextDir, modelDir);
      // Universal adversarial training: the perturbation trained beside the weights, from its last saved epoch.
      const deltaFile = join(modelDir, UAT_DELTA);
      const delta = o.defence === 'uat' ? tf.variable(existsSync(deltaFile) ? loadPerturbation(deltaFile, model, log, OWN_FORMAT) : tf.zeros(model.inputShape), true) : null;
      if (delta) release.push(delta);
      if (o.defence === 'pool') mkdirSync(join(roundDir, 'pool'), { recursive: true });
      try {
        const memberFile = (i: number) => join(roundDir, 'pool', `member-${i}.npy`);
        const memberSeed = (i: number) => o.seed + 1000 * r + 1 + i;
        if (ctl.remoteCraft && o.defence === 'pool') {
          // Every missing member at once on the workers, from the model as it is on disk (the workers load the same file).
          const missing = Array.from({ length: o.poolSize }, (_, i) => i).filter((i) => !existsSync(memberFile(i)));
          if (missing.length) {
            log.info(`round ${r}: crafting ${missing.length} pool member(s) on the queue's workers`);
            const runs = missing.map((i) => ({ X, options: { ...attack, seed: memberSeed(i) } }));
            const made = await ctl.remoteCraft({ model, spec: currentSpec, data: job.data ?? null, folder: xDir, strict: job.strict, runs, method });
            made.forEach((m, k) => {
              writeNpy(memberFile(missing[k]) + '.tmp', { data: m.v, shape: model.inputShape });
              renameSync(memberFile(missing[k]) + '.tmp', memberFile(missing[k]));
            });
          }
        }
        for (let i = 0; o.defence === 'pool' && i < o.poolSize; i++) {
          const file = memberFile(i);
          if (existsSync(file)) {
            members.push(loadPerturbation(file, model, log, OWN_FORMAT));
            continue;
          }
          const t0 = Date.now();
          const res = await craft(model, X, method, { ...attack, seed: memberSeed(i) }, { signal: ctl.signal });
          members.push(res.v);
          // Written then renamed: a member file exists only when it is complete.
          writeNpy(file + '.tmp', { data: (await res.v.data()) as Float32Array, shape: res.v.shape });
          renameSync(file + '.tmp', file);
          log.info(`round ${r}: pool member ${i + 1}/${o.poolSize}: fooling rate on X ${pct(res.history.at(-1)?.foolingRate ?? 0)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        }
        pool = delta ? (delta.expandDims(0) as tf.Tensor4D) : (tf.stack(members) as tf.Tensor4D);
      } finally {
        tf.dispose(members);
      }
      release.push(pool);

      // Fine-tuning, from the last saved epoch of this round if there is one.
      const progress = readJsonIf<{ epochs: EpochRecord[] }>(join(modelDir, 'training.json'));
      const epochs: EpochRecord[] = progress?.epochs ?? [];
      const t = await loadTrainable(progress ? findCard(join(modelDir, 'card.json')) : currentCard, assets);
      try {
        // An epoch that costs too much clean accuracy is undone and retried at a tenth of the
        // learning rate (twice at most): one default serves a small net and a pretrained MobileNet.
        const undone = epochs.filter((x) => !x.kept).length;
        const last = epochs[epochs.length - 1];
        let lr = last ? (last.kept ? last.learningRate : last.learningRate / 10) : o.learningRate;
        let optimizer = tf.train.adam(lr);
        let backoffs = undone;
        for (let e = epochs.filter((x) => x.kept).length + 1; e <= o.epochs && backoffs <= MAX_BACKOFFS; ) {
          const t0 = Date.now();
          const before = snapshotWeights(t);
          const deltaBefore = delta && tf.keep(delta.clone());
          let loss: number;
          let check: { accuracy: number; poolFoolingRate: number };
          try {
            const seed = passSeed(o.seed + r, e);
            const onBatch = (done: number, l: number) => ctl.onBatch?.({ round: r, epoch: e, epochs: o.epochs, done, total: X.size, loss: l });
            if (delta) {
              loss = await uatEpoch(t, X, targets, delta, { batchSize: o.batchSize, norm: attack.norm, xi: attack.xi, step: o.uatStep ?? attack.xi / 5 }, optimizer, seed, onBatch, ctl.signal);
              pool.dispose();
              pool = delta.expandDims(0) as tf.Tensor4D;
              release.push(pool);
            } else loss = await trainEpoch(t, X, targets, pool, o, optimizer, seed, onBatch, ctl.signal);
            check = await trainingCheck(t, V, pool, Math.min(o.batchSize, 64));
          } catch (err) {
            tf.dispose([...before, ...(deltaBefore ? [deltaBefore] : [])]);
            optimizer.dispose();
            throw err;
          }
          const kept = baseline - check.accuracy <= o.maxAccuracyDrop;
          const rec: EpochRecord = { epoch: e, learningRate: lr, loss, cleanAccuracy: check.accuracy, poolFoolingRate: check.poolFoolingRate, seconds: (Date.now() - t0) / 1000, kept };
          if (!kept) {
            restoreWeights(t, before);
            if (delta && deltaBefore) delta.assign(deltaBefore);
            backoffs++;
            const fell = `clean accuracy fell to ${pct(check.accuracy)} (original ${pct(baseline)}, more than {maxAccuracyDrop} ${o.maxAccuracyDrop})`;
            if (backoffs <= MAX_BACKOFFS) {
              lr /= 10;
              optimizer.dispose();
              optimizer = tf.train.adam(lr);
              log.warn(`round ${r}, epoch ${e}: ${fell}; epoch undone, retrying at learning rate ${lr.toExponential(0)}`);
            } else log.warn(`round ${r}, epoch ${e}: ${fell}; epoch undone, training stops`);
          } else e++;
          tf.dispose([...before, ...(deltaBefore ? [deltaBefore] : [])]);
          epochs.push(rec);
          ctl.onEpoch?.(r, rec);
          // Weights, card and epoch list go to a new folder that replaces the old one whole.
          rmSync(nextDir, { recursive: true, force: true });
          await saveTrainable(t, nextDir, assets, { from: currentCard.name, round: r, epochs: epochs.filter((x) => x.kept).length, finetune: o, method, attack });
          if (delta) writeNpy(join(nextDir, UAT_DELTA), { data: (await delta.data()) as Float32Array, shape: delta.shape });
          writeJson(join(nextDir, 'training.json'), { epochs });
          rmSync(modelDir, { recursive: true, force: true });
          renameSync(nextDir, modelDir);
        }
        optimizer.dispose();
      } finally {
        t.dispose();
      }
      const cardFile = join(modelDir, 'card.json');
      currentCard = findCard(cardFile);
      const previousV = loadPerturbation(join(job.out, `round-${r - 1}`, 'attack', 'perturbation.npy'), model, log, OWN_FORMAT);
      model.dispose();
      model = await loadModel(cardFile, { assets, engine: job.engine }, log);
      currentSpec = { spec: resolve(cardFile) };
      try {
        await attackRound(r, cardFile, previousV, epochs, started);
      } finally {
        previousV.dispose();
      }
    }
    return { config, rounds, out: job.out };
  } finally {
    tf.dispose(release);
    model.dispose();
  }
}


/** The rounds table the paper describes: clean accuracy and a fresh UAP's fooling rate, per round. */
export function defenceMarkdown(d: DefenceResult): string {
  const a = d.config.attack as { norm: number | string; xi: number };
  const lines = [
    `# Defence: ${(d.config.finetune as FinetuneOptions).defence === 'uat' ? 'universal adversarial training' : 'fine-tuning on universal perturbations'} — ${String(d.config.model)}`,
    '',
    `Attack: ${methodName(d.config)}, ${a.norm === 2 ? 'L2' : 'Linf'} xi = ${a.xi}; ${String(d.config.images)} training/crafting images, ${String(d.config.valImages)} validation images.`,
    '',
    '| round | clean accuracy | fresh UAP fooling rate | previous round\'s UAP | epochs kept | seconds |',
    '|---|---|---|---|---|---|',
    ...d.rounds.map((r) => `| ${r.round === 0 ? '0 (original)' : r.round} | ${pct(r.cleanAccuracy)} | ${pct(r.foolingRate)} | ${pct(r.previousFoolingRate)} | ${r.round === 0 ? '-' : r.epochs.filter((e) => e.kept).length} | ${r.seconds.toFixed(0)} |`),
    '',
  ];
  return lines.join('\n');
}
