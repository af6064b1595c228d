import { criterionOf } from './criterion.js';
import { crossEntropy } from './losses.js';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { lpNorm } from '../math/lp.js';
import { Ascent, batchGradient } from './ascent.js';
import { checkOptions, defaultsOf, fingerprintOf, type OptionsOf } from './options.js';
export { batchGradient };
import { argmaxRows, forwardLogits, vjp } from '../classifier/compute.js';
import { scratchRows, type GradientScratch } from '../classifier/gradients.js';
import { imageSize, shiftedBy, type Batch } from '../math/batch.js';
import { forEachMinibatchIndex, runPasses, type PassMethod, type PassOptions, type RunControl, type UniversalResult } from './passes.js';

/**
 * SGD-UAP: minibatch stochastic gradient ascent on v of a bounded loss of the perturbed images
 * (Shafahi et al., "Universal adversarial training", AAAI 2020), v projected onto the Lp ball after
 * every step. Untargeted it raises the loss of each image's clean label; targeted it lowers the loss
 * of the target class.
 */

export type SgdLoss = 'ce' | 'margin';

/**
 * SGD-UAP options: the pass options plus the loss ('ce': cross-entropy clamped at beta; 'margin': C&W
 * logit margin bounded at -kappa), the optimiser, the learning rate and its decay, and the gradient
 * shards (the schema in options.ts). A step's gradient is the sum, in order, of its shards'
 * gradients, each from one forward and one backward pass over its images: the same sum whether the
 * shards run here or on `uap worker`s (RunControl.shardGradients), so a distributed run gives the
 * local run's v bit for bit.
 */
export type SgdOptions = PassOptions & OptionsOf<'sgd'>;

/** A minibatch's images to differentiate on (positions in X and their clean labels), in order. */
export interface GradientShard {
  idx: number[];
  labels: Int32Array;
}

/** What one gradient shard gives: its part of the step's gradient on v, and how many of its images were already done. */
export interface ShardGradient {
  grad: Float32Array;
  fooled: number;
}

/** Computes gradient shards elsewhere (on workers): the shards of one step at v, in order; `n` is the minibatch size. */
export type ShardGradients = (v: Float32Array, shards: GradientShard[], n: number) => Promise<ShardGradient[]>;

/**
 * One shard's gradient of the step's loss with respect to v, at x + v (the cotangent divided by the
 * MINIBATCH size `n`, so that shards add up to the minibatch gradient), and its images already done.
 */
export async function shardGradient(
  model: Classifier,
  x: Batch,
  v: Float32Array,
  labels: Int32Array,
  n: number,
  o: SgdLossOptions,
  scratch?: GradientScratch,
): Promise<ShardGradient> {
  const size = imageSize(x.shape);
  const K = model.numClasses;
  const criterion = criterionOf(o.target, o.classes);
  const { raw, adv } = shiftedBy(x, v);
  const logits = await forwardLogits(model, adv);
  let fooled = 0;
  argmaxRows(logits, K).forEach((top, i) => {
    if (criterion.done(top, labels[i])) fooled++;
  });
  const { dy } = lossCotangent(logits, labels, K, o, n);
  const dx = (await vjp(model, adv, dy, 1, scratchRows(model, x.n * size, scratch))).dx;
  return { grad: batchGradient(dx, raw, size), fooled };
}

/** The loss settings a gradient shard needs. */
export type SgdLossOptions = Pick<SgdOptions, 'loss' | 'beta' | 'kappa' | 'target' | 'classes'>;

/** The step's shards: `size` images at a time, in the minibatch's order. */
export function gradientShards(idx: number[], labels: Int32Array, size: number): GradientShard[] {
  const out: GradientShard[] = [];
  for (let s = 0; s < idx.length; s += size) out.push({ idx: idx.slice(s, s + size), labels: labels.slice(s, s + size) });
  return out;
}

/** The shards' gradients added in order (float32, as every run adds them), and their done images. */
export function sumShards(parts: ShardGradient[], size: number): ShardGradient {
  const grad = new Float32Array(size);
  let fooled = 0;
  for (const p of parts) {
    for (let t = 0; t < size; t++) grad[t] += p.grad[t];
    fooled += p.fooled;
  }
  return { grad, fooled };
}

/** SGD-UAP's defaults (the schema's) for everything but the radius. */
export const SGD_DEFAULTS = defaultsOf('sgd') as Omit<SgdOptions, 'xi'>;

export function validateSgdOptions(o: SgdOptions): void {
  checkOptions(o, ['sgd']);
}

/**
 * Per image, the loss and its gradient with respect to the logits, oriented so that ADDING it helps
 * the attack, divided by the batch size: the cotangent of one vector-Jacobian product.
 */
export function lossCotangent(
  logits: Float32Array,
  labels: Int32Array,
  k: number,
  o: SgdLossOptions,
  n = labels.length,
): { dy: Float32Array; loss: number } {
  const dy = new Float32Array(labels.length * k);
  const criterion = criterionOf(o.target, o.classes);
  let total = 0;
  for (let i = 0; i < labels.length; i++) {
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
  return { dy, loss: total / labels.length };
}

/** SGD-UAP (Shafahi et al.; Zhang et al.): v climbs a loss of the minibatch (cross-entropy or bounded logit margin) by projected sign, plain or Adam steps; targeted with `target`, class-discriminative with `classes`. Same control (progress, checkpoints, abort) and result as `computeAlgorithm1`. */
export async function computeSgdUniversal(
  model: Classifier,
  X: ImageSet,
  options: SgdOptions,
  ctl: RunControl & { shardGradients?: ShardGradients } = {},
): Promise<UniversalResult> {
  const o = options;
  validateSgdOptions(o);
  const [h, w, c] = model.inputShape;
  const lr0 = o.lr ?? o.xi / 10;
  const ascent = new Ascent([h, w, c], o.optimizer);
  const gradShard = o.gradShard ?? o.batchSize;
  // Every shard's input gradients in one buffer: each is summed into the step's gradient at once.
  const scratch: GradientScratch = {};
  /** The step's shards here, one forward and backward pass each. */
  const local = async (v: Float32Array, shards: GradientShard[], n: number) => {
    const parts: ShardGradient[] = [];
    for (const s of shards) parts.push(await shardGradient(model, X.images(s.idx), v, s.labels, n, o, scratch));
    return parts;
  };
  const method: PassMethod = {
    name: 'sgd',
    // gradShard shapes the float sums, so a resume with another value is refused (as any setting).
    settings: fingerprintOf(o, ['sgd']),
    async pass(ctx) {
      const lr = lr0 * o.lrDecay ** ctx.pass;
      let steps = 0;
      await forEachMinibatchIndex(ctx, X, o.batchSize, async ({ idx, labels }) => {
        const shards = gradientShards(idx, labels, gradShard);
        const v = ctx.v.dataSync() as Float32Array;
        const parts = ctl.shardGradients ? await ctl.shardGradients(v, shards, idx.length) : await local(v, shards, idx.length);
        const { grad, fooled } = sumShards(parts, h * w * c);
        const prev = ctx.v;
        ctx.v = ascent.step(prev, grad, o.norm, lr, o.xi);
        prev.dispose();
        steps++;
        return fooled;
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
