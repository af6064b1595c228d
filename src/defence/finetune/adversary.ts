import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '../../tf.js';
import type { Classifier } from '../../classifier/classifier.js';
import { Rng } from '../../math/random.js';
import { writeNpy } from '../../io/npy.js';
import { loadPerturbation, OWN_FORMAT } from '../../perturbation/file.js';
import type { Log } from '../../log.js';
import { drawPerturbations, applyDraws } from '../sampling.js';
import { uatEpoch } from '../uat.js';
import { runEpoch } from '../epoch.js';
import type { Trainable } from '../trainable.js';
import { UAT_DELTA } from './folder.js';
import type { FinetuneRun } from './job.js';

/** What a round trains the model against: the paper's fixed pool, or the perturbation universal adversarial training trains alongside. */
export interface Adversary {
  /** One training epoch of the weights (and of the adversary itself, for UAT); the mean loss. */
  epoch(t: Trainable, optimizer: tf.Optimizer, seed: number, progress: (done: number, loss: number) => void): Promise<number>;
  /** The perturbations the validation check applies, [P, H, W, C] (image i gets member i mod P); the caller disposes them. */
  members(): tf.Tensor4D;
  /** Its state now, to put back should the epoch be undone. */
  snapshot(): { restore(): void; dispose(): void };
  /** Writes what it keeps beside the weights into a model folder being saved. */
  save(modelDir: string): Promise<void>;
  dispose(): void;
}

/** Nothing to restore: the pool does not change while the weights train. */
const NO_STATE = { restore: () => {}, dispose: () => {} };

/**
 * The paper's fine-tuning on a fixed pool ([P, H, W, C], owned from here on): each epoch, shuffled
 * minibatches of X, each image (by default half of them) perturbed by a scaled pool member.
 */
export function poolAdversary(run: FinetuneRun, targets: Int32Array, pool: tf.Tensor4D): Adversary {
  const { X, o } = run;
  return {
    epoch: (t, optimizer, seed, progress) => {
      const rng = new Rng(seed);
      return runEpoch(
        rng.permutation(X.size),
        o.batchSize,
        async (idx) => {
          const draws = drawPerturbations(idx.length, pool.shape[0], rng, o.sampling);
          const x = tf.tidy(() => applyDraws(X.batch(idx), pool, draws));
          const y = tf.tidy(() =>
            tf.oneHot(
              tf.tensor1d(
                idx.map((i) => targets[i]),
                'int32',
              ),
              t.numClasses,
            ),
          );
          const cost = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, t.logits(x)) as tf.Scalar, true, t.variables)!;
          const loss = (await cost.data())[0];
          tf.dispose([x, y, cost]);
          return loss;
        },
        progress,
        run.ctl.signal,
      );
    },
    members: () => pool.clone(),
    snapshot: () => NO_STATE,
    save: async () => {},
    dispose: () => pool.dispose(),
  };
}

/** UAT's perturbation as a round's model folder left it (a resumed round goes on from its last saved epoch), else zero. */
export function savedUatDelta(modelDir: string, model: Classifier, log: Log): tf.Variable {
  const file = join(modelDir, UAT_DELTA);
  return tf.tidy(() => tf.variable(existsSync(file) ? loadPerturbation(file, model, log, OWN_FORMAT) : tf.zeros(model.inputShape), true));
}

/**
 * Universal adversarial training (see uat.ts): the perturbation `delta` (owned from here on) ascends
 * as the weights descend, and is saved beside them.
 */
export function uatAdversary(run: FinetuneRun, targets: Int32Array, delta: tf.Variable): Adversary {
  const { attack, o } = run;
  const settings = { batchSize: o.batchSize, norm: attack.norm, xi: attack.xi, step: o.uatStep ?? attack.xi / 5 };
  return {
    epoch: (t, optimizer, seed, progress) => uatEpoch(t, run.X, targets, delta, settings, optimizer, seed, progress, run.ctl.signal),
    members: () => delta.expandDims(0) as tf.Tensor4D,
    snapshot: () => {
      const before = tf.keep(delta.clone());
      return { restore: () => delta.assign(before), dispose: () => before.dispose() };
    },
    save: async (modelDir) => writeNpy(join(modelDir, UAT_DELTA), { data: (await delta.data()) as Float32Array, shape: delta.shape }),
    dispose: () => delta.dispose(),
  };
}
