import * as tf from '../tf.js';
import type { ImageSet } from '../data/imageSet.js';
import type { Norm } from '../math/lp.js';
import { Ascent } from '../attacks/ascent.js';
import { Rng } from '../math/random.js';
import type { Trainable } from './trainable.js';
import { runEpoch } from './epoch.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * Universal adversarial training (Shafahi, Najibi, Xu, Dickerson, Davis, Goldstein, AAAI 2020): the
 * weights and one universal perturbation delta are trained together. Each minibatch gives, from one
 * forward and backward pass of the cross-entropy on clip(x + delta), a descent step on the weights
 * and an ascent step on delta (its sign for Linf, its direction for L2, `step` pixels long), delta
 * projected back onto the ball. Unlike fine-tuning on a fixed pool, the attack keeps up with the model.
 */
export interface UatSettings {
  batchSize: number;
  norm: Norm;
  xi: number;
  /** Length of delta's ascent step in the ball's norm (pixels). */
  step: number;
}

/** One epoch over X; returns the mean training cross-entropy. `delta` [H, W, C] is updated in place. */
export async function uatEpoch(
  t: Trainable,
  X: ImageSet,
  targets: Int32Array,
  delta: tf.Variable,
  o: UatSettings,
  optimizer: tf.Optimizer,
  seed: number,
  progress: (done: number, loss: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  // Sign steps (Linf) or the gradient's direction (L2), `step` long, projected: the step every method on v takes.
  const ascent = new Ascent(delta.shape as ImageShape, 'sign');
  return runEpoch(
    new Rng(seed).permutation(X.size),
    o.batchSize,
    async (idx) => {
      const x = X.batch(idx);
      const y = tf.tidy(() =>
        tf.oneHot(
          tf.tensor1d(
            idx.map((i) => targets[i]),
            'int32',
          ),
          t.numClasses,
        ),
      );
      const { value, grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(y, t.logits(tf.clipByValue(tf.add(x, delta), 0, 255) as tf.Tensor4D)) as tf.Scalar,
        [...t.variables, delta],
      );
      const { [delta.name]: gDelta, ...weightGrads } = grads;
      optimizer.applyGradients(weightGrads);
      const next = ascent.step(delta as unknown as tf.Tensor3D, (await gDelta.data()) as Float32Array, o.norm, o.step, o.xi);
      delta.assign(next);
      next.dispose();
      const loss = (await value.data())[0];
      tf.dispose([x, y, value, gDelta, ...Object.values(weightGrads)]);
      return loss;
    },
    progress,
    signal,
  );
}
