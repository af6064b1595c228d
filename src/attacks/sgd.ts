import { criterionOf } from './criterion.js';
import { crossEntropy } from './losses.js';
import * as tf from '../tf.js';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { lpNorm } from '../math/lp.js';
import { Ascent, batchGradient, validateAscentOptions } from './ascent.js';
export { batchGradient };
import { argmaxRows, forwardLogits, vjpRows } from '../model/compute.js';
import { UsageError } from '../errors.js';
import { forEachBatch, runPasses, type PassMethod, type PassOptions, type RunControl, type UniversalResult } from './passes.js';

/**
 * SGD-UAP: minibatch stochastic gradient ascent on v of a bounded loss of the perturbed images
 * (Shafahi et al., "Universal adversarial training", AAAI 2020), v projected onto the Lp ball after
 * every step. Untargeted it raises the loss of each image's clean label; targeted it lowers the loss
 * of the target class.
 */

export type SgdLoss = 'ce' | 'margin';

export interface SgdOptions extends PassOptions {
  /** 'ce': cross-entropy clamped at beta, mean(min(CE, beta)); 'margin': C&W logit margin bounded at -kappa. */
  loss: SgdLoss;
  beta: number;
  kappa: number;
  /** 'sign': sign of the gradient (Linf) or its direction (L2); 'adam': Adam's direction. */
  optimizer: 'sign' | 'adam';
  /** Step length in the ball's norm (pixels), for the first pass; default xi / 10. */
  lr?: number;
  /** The step length is multiplied by this after every pass. */
  lrDecay: number;
}

export const SGD_DEFAULTS: Omit<SgdOptions, 'xi' | 'norm'> = {
  loss: 'ce', beta: 12, kappa: 0, optimizer: 'sign', lrDecay: 0.9, delta: 0.2, maxPasses: 10, batchSize: 32, seed: 0,
};

export function validateSgdOptions(o: SgdOptions): void {
  const bad = (flag: string, what: string) => {
    throw new UsageError(`{${flag}}: ${what}`);
  };
  if (o.loss !== 'ce' && o.loss !== 'margin') bad('loss', `expected ce or margin, got ${String(o.loss)}`);
  if (!(o.beta > 0)) bad('beta', `expected a positive number, got ${o.beta}`);
  if (!(o.kappa >= 0)) bad('kappa', `expected a number >= 0, got ${o.kappa}`);
  validateAscentOptions(o);
}

/**
 * Per image, the loss and its gradient with respect to the logits, oriented so that ADDING it helps
 * the attack, divided by the batch size: the cotangent of one vector-Jacobian product.
 */
export function lossCotangent(logits: Float32Array, labels: Int32Array, k: number, o: Pick<SgdOptions, 'loss' | 'beta' | 'kappa' | 'target' | 'classes'>): { dy: Float32Array; loss: number } {
  const n = labels.length;
  const dy = new Float32Array(n * k);
  const criterion = criterionOf(o.target, o.classes);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const z = logits.subarray(i * k, (i + 1) * k);
    const g = dy.subarray(i * k, (i + 1) * k);
    const cls = criterion.classOf(labels[i]);
    const sign = criterion.sign;
    if (criterion.keeps(labels[i])) {
      // Class-discriminative: an image of a class not attacked keeps its label (its cross-entropy is lowered).
      const { ce, grad } = crossEntropy(z, cls);
      total -= ce;
      for (let j = 0; j < k; j++) g[j] = -grad[j] / n;
    } else if (o.loss === 'ce') {
      const { ce, grad } = crossEntropy(z, cls);
      // Untargeted: min(CE, beta) stops pushing images that are already far across.
      const clamped = sign > 0; // targeted: the target's loss is lowered all the way
      const active = !clamped || ce < o.beta;
      total += clamped ? Math.min(ce, o.beta) : ce;
      if (!active) continue;
      for (let j = 0; j < k; j++) g[j] = (sign * grad[j]) / n;
    } else {
      let other = -1;
      for (let j = 0; j < k; j++) if (j !== cls && (other < 0 || z[j] > z[other])) other = j;
      // margin m = z_cls - z_other: untargeted lowers it to -kappa; targeted raises it to +kappa.
      const m = z[cls] - z[other];
      const active = sign * m > -o.kappa;
      total += Math.max(sign * m, -o.kappa);
      if (!active) continue;
      g[cls] = -sign / n;
      g[other] = sign / n;
    }
  }
  return { dy, loss: total / n };
}

export async function computeSgdUniversal(model: Classifier, X: ImageSet, options: SgdOptions, ctl: RunControl = {}): Promise<UniversalResult> {
  const o = options;
  validateSgdOptions(o);
  const [h, w, c] = model.inputShape;
  const K = model.numClasses;
  const lr0 = o.lr ?? o.xi / 10;
  const criterion = criterionOf(o.target, o.classes);
  const ascent = new Ascent([h, w, c], o.optimizer);
  const method: PassMethod = {
    name: 'sgd',
    settings: { loss: o.loss, beta: o.beta, kappa: o.kappa, optimizer: o.optimizer, lr: lr0, lrDecay: o.lrDecay },
    async pass(ctx) {
      const lr = lr0 * o.lrDecay ** ctx.pass;
      let steps = 0;
      await forEachBatch(ctx, X, o.batchSize, async ({ idx, labels, x }) => {
        const raw = tf.tidy(() => tf.add(x, ctx.v) as tf.Tensor4D);
        const adv = tf.tidy(() => tf.clipByValue(raw, 0, 255) as tf.Tensor4D);
        try {
          const logits = await forwardLogits(model, adv);
          let fooled = 0;
          argmaxRows(logits, K).forEach((top, i) => {
            if (criterion.done(top, labels[i])) fooled++;
          });
          const { dy } = lossCotangent(logits, labels, K, o);
          const gradV = batchGradient((await vjpRows(model, adv, dy)).dx, raw.dataSync() as Float32Array, h * w * c);
          const prev = ctx.v;
          ctx.v = ascent.step(prev, gradV, o.norm, lr, o.xi);
          prev.dispose();
          steps++;
          return fooled;
        } finally {
          tf.dispose([raw, adv]);
        }
      });
      return steps;
    },
    state: () => ascent.state(),
    restore: (st) => ascent.restore(st),
  };
  const res = await runPasses(model, X, o, method, ctl);
  if (lpNorm(res.v, 'inf') === 0) res.stopReason += '; v is zero: no gradient moved it';
  return res;
}
