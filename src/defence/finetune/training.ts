import * as tf from '../../tf.js';
import type { ImageSet } from '../../data/dataset.js';
import type { ModelCard } from '../../classifier/card.js';
import { findCard } from '../../import/load.js';
import { argmaxRows } from '../../classifier/compute.js';
import { foolingRate } from '../../evaluation/scoring.js';
import { passSeed } from '../../math/random.js';
import { pct } from '../../report/format.js';
import { applyDraws } from '../sampling.js';
import { loadTrainable, restoreWeights, snapshotWeights, type Trainable } from '../trainable.js';
import type { Adversary } from './adversary.js';
import type { RoundFolder } from './folder.js';
import type { FinetuneRun } from './job.js';
import { saveRoundModel } from './modelFolder.js';
import { readTrainingLog, type EpochRecord } from './records.js';

/** Retries of an undone epoch at a tenth of the learning rate, per round. */
const MAX_BACKOFFS = 2;

const keptCount = (epochs: EpochRecord[]) => epochs.filter((e) => e.kept).length;

/** Clean top-1 accuracy of the model being trained, and the adversary's fooling rate, on a labelled set (TF.js forward passes). */
async function trainingCheck(
  t: Trainable,
  V: ImageSet,
  adversary: Adversary,
  batch: number,
): Promise<{ accuracy: number; poolFoolingRate: number }> {
  const labels = V.labels!;
  const clean = new Int32Array(V.size);
  const adv = new Int32Array(V.size);
  const pool = adversary.members();
  try {
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
  } finally {
    pool.dispose();
  }
  return { accuracy: clean.reduce((n, p, i) => n + (p === labels[i] ? 1 : 0), 0) / V.size, poolFoolingRate: foolingRate(clean, adv) };
}

/**
 * A round's learning rate and its back-off: an epoch that costs too much clean accuracy is undone and
 * retried at a tenth of the rate, MAX_BACKOFFS times at most, with fresh optimiser moments; so one
 * default rate serves a small net and a pretrained MobileNet. It starts where the round's saved epochs
 * left it, so a resumed round goes on at the rate (and with the retries) it had reached.
 */
class Backoff {
  learningRate: number;
  backoffs: number;
  optimizer: tf.Optimizer;

  constructor(epochs: EpochRecord[], initialRate: number) {
    const last = epochs.at(-1);
    this.learningRate = last ? (last.kept ? last.learningRate : last.learningRate / 10) : initialRate;
    this.backoffs = epochs.length - keptCount(epochs);
    this.optimizer = tf.train.adam(this.learningRate);
  }

  get exhausted(): boolean {
    return this.backoffs > MAX_BACKOFFS;
  }

  /** After an undone epoch: the next try's rate and optimiser; false when no try is left. */
  retry(): boolean {
    this.backoffs++;
    if (this.exhausted) return false;
    this.learningRate /= 10;
    this.optimizer.dispose();
    this.optimizer = tf.train.adam(this.learningRate);
    return true;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

/** The weights and the adversary's state before an epoch, to put back should it be undone. */
function undoPoint(t: Trainable, adversary: Adversary): { restore(): void; dispose(): void } {
  const weights = snapshotWeights(t);
  const own = adversary.snapshot();
  return {
    restore: () => {
      restoreWeights(t, weights);
      own.restore();
    },
    dispose: () => {
      tf.dispose(weights);
      own.dispose();
    },
  };
}

/**
 * Epoch e of round r, then the accuracy guard: clean accuracy on V more than maxAccuracyDrop below the
 * original model's (`baseline`) undoes it and backs the rate off.
 */
async function guardedEpoch(
  run: FinetuneRun,
  r: number,
  e: number,
  t: Trainable,
  adversary: Adversary,
  backoff: Backoff,
  baseline: number,
): Promise<EpochRecord> {
  const { o, ctl } = run;
  const started = Date.now();
  const undo = undoPoint(t, adversary);
  try {
    const progress = (done: number, loss: number) => ctl.onBatch?.({ round: r, epoch: e, epochs: o.epochs, done, total: run.X.size, loss });
    const loss = await adversary.epoch(t, backoff.optimizer, passSeed(o.seed + r, e), progress);
    const check = await trainingCheck(t, run.V, adversary, Math.min(o.batchSize, 64));
    const kept = baseline - check.accuracy <= o.maxAccuracyDrop;
    const rec: EpochRecord = {
      epoch: e,
      learningRate: backoff.learningRate,
      loss,
      cleanAccuracy: check.accuracy,
      poolFoolingRate: check.poolFoolingRate,
      seconds: (Date.now() - started) / 1000,
      kept,
    };
    if (!kept) {
      undo.restore();
      const fell = `round ${r}, epoch ${e}: clean accuracy fell to ${pct(check.accuracy)} (original ${pct(baseline)}, more than {maxAccuracyDrop} ${o.maxAccuracyDrop}); epoch undone`;
      run.log.warn(
        backoff.retry() ? `${fell}, retrying at learning rate ${backoff.learningRate.toExponential(0)}` : `${fell}, training stops`,
      );
    }
    return rec;
  } finally {
    undo.dispose();
  }
}

/**
 * Fine-tunes round r's model against its adversary until o.epochs epochs are kept or the back-off gives
 * up, from the last epoch its model folder saved (with fresh optimiser moments), else from `from` (the
 * card the round starts from). Each epoch is saved as it ends. The round's epoch records.
 */
export async function trainRound(
  run: FinetuneRun,
  r: number,
  adversary: Adversary,
  from: ModelCard,
  folder: RoundFolder,
  baseline: number,
): Promise<EpochRecord[]> {
  const saved = readTrainingLog(folder.model);
  const epochs = saved ?? [];
  const t = await loadTrainable(saved ? findCard(folder.card) : from, run.assets);
  const backoff = new Backoff(epochs, run.o.learningRate);
  try {
    for (let e = keptCount(epochs) + 1; e <= run.o.epochs && !backoff.exhausted;) {
      const rec = await guardedEpoch(run, r, e, t, adversary, backoff, baseline);
      if (rec.kept) e++;
      epochs.push(rec);
      run.ctl.onEpoch?.(r, rec);
      const provenance = { from: from.name, round: r, epochs: keptCount(epochs), finetune: run.o, method: run.method, attack: run.attack };
      await saveRoundModel(folder, t, adversary, epochs, run.assets, provenance);
    }
  } finally {
    backoff.dispose();
    t.dispose();
  }
  return epochs;
}
