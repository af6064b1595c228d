import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { ballL2Radius, l2, projectInPlace } from '../math/lp.js';
import { argmaxRows, forwardLogits } from '../classifier/compute.js';
import { innerStepOf } from './innerStep.js';
import { criterionOf } from './criterion.js';
import { UsageError } from '../errors.js';
import { forEachMinibatchIndex, runPasses, type PassMethod, type PassOptions, type RunControl, type UniversalResult } from './passes.js';
import { pickImages } from '../math/batch.js';
import { checkOptions, defaultsOf, fingerprintOf, type OptionsOf } from './options.js';

/**
 * Algorithm 1's options: the pass options plus the inner attack's (DeepFool's by default) settings,
 * the projection and the step rule (the schema in options.ts says what each does).
 */
export type Algorithm1Options = PassOptions &
  OptionsOf<'algorithm1'> & {
    /** Cap on images x candidates per backward pass (memory). */
    maxGradientRows?: number;
  };

/** Investigation knobs of bench/algorithm1.ts, not options of the method: they enter the fingerprint with their neutral values. */
export interface Algorithm1Knobs {
  /** The step shrinks by this factor per pass. */
  stepDecay?: number;
  /** After each pass, v is rescaled onto the ball's boundary (||v||_p = xi). */
  rescale?: boolean;
  /** 'converged' (default, the reference code): only steps that crossed the boundary are added; 'all': every step. */
  accept?: 'converged' | 'all';
}

export { INNER_ATTACKS, type InnerKind } from './innerStep.js';

export type Algorithm1Variant = 'accumulated' | 'paper';

/**
 * The two ways Algorithm 1 turns DeepFool steps into v. 'paper' is the reference code: the minimal
 * step, v projected after each. It needs |X| ~ 10,000: with 200-1000 images the minimal steps (L2 ~20
 * pixels) never add up to the ball (||v||_2 ~600 of 3880 at Linf 10) and v overfits X (bench/algorithm1.ts:
 * 17% of validation images at 200 images, below random noise). 'accumulated' (the default) adds each
 * step's unit direction with a length of half the ball's L2 radius and projects the running SUM, so
 * directions shared by many images build up while the clipping of one step cannot erase the others:
 * 65% at 200 images and 77% at 1000 (Linf 10, MobileNet v1 0.25; ART's UniversalPerturbation 47% / 53%).
 */
export const ALGORITHM1_VARIANTS: Record<Algorithm1Variant, Pick<Algorithm1Options, 'projection' | 'steps' | 'stepSize'>> = {
  accumulated: { projection: 'sum', steps: 'unit', stepSize: 0.5 },
  paper: { projection: 'each', steps: 'minimal', stepSize: 1 },
};

/** Algorithm 1's defaults (the schema's: the pass runner's, DeepFool's, the 'accumulated' variant); xi defaults by norm and model. */
export const ALGORITHM1_DEFAULTS = defaultsOf('algorithm1') as Omit<Algorithm1Options, 'xi'>;

export function validateAlgorithm1Options(o: Algorithm1Options & Algorithm1Knobs): void {
  checkOptions(o, ['algorithm1']);
  const bad = (flag: string, what: string) => {
    throw new UsageError(`{${flag}}: ${what}`);
  };
  if (o.stepDecay !== undefined && !(o.stepDecay > 0 && o.stepDecay <= 1))
    bad('stepDecay', `expected a number in (0, 1], got ${o.stepDecay}`);
  if (o.accept !== undefined && o.accept !== 'converged' && o.accept !== 'all')
    bad('accept', `expected converged or all, got ${String(o.accept)}`);
  if (o.classes !== undefined)
    bad('classes', "class-discriminative attacks need the sgd method (its loss keeps the other classes' labels)");
}

/**
 * Algorithm 1 of Moosavi-Dezfooli et al. (CVPR 2017). Passes over X in a seeded order; per batch,
 * one forward pass finds the images x with k(x+v) = k(x) (targeted: k(x+v) != target); one batched
 * DeepFool call at x+v gives each its minimal extra perturbation (targeted: towards the target), all
 * at the batch-start v; v then takes them one image at a time (see ALGORITHM1_VARIANTS for how). DeepFool
 * takes its L2 step by default (as the paper's code does; the Linf constraint comes from the projection).
 * Only converged DeepFool results are added (as the reference code does).
 */
export async function computeAlgorithm1(
  model: Classifier,
  X: ImageSet,
  options: Algorithm1Options & Algorithm1Knobs,
  ctl: RunControl = {},
): Promise<UniversalResult> {
  const o = options;
  validateAlgorithm1Options(o);
  const [h, w, c] = model.inputShape;
  const size = h * w * c;
  /** 'sum': the running sum of the steps, whose projection is v. */
  let sum: Float32Array | undefined;
  const method: PassMethod = {
    name: 'algorithm1',
    settings: {
      ...fingerprintOf(o, ['algorithm1']),
      stepDecay: o.stepDecay ?? 1,
      rescale: o.rescale ?? false,
      accept: o.accept ?? 'converged',
    },
    async pass(ctx) {
      let updates = 0;
      const step = innerStepOf(model, o);
      const criterion = criterionOf(o.target);
      const v = Float32Array.from(ctx.v.dataSync());
      if (o.projection === 'sum') sum ??= v.slice();
      const length = o.stepSize * (o.stepDecay ?? 1) ** ctx.pass * (o.steps === 'unit' ? ballL2Radius(o.norm, o.xi, size) : 1);
      await forEachMinibatchIndex(ctx, X, o.batchSize, async ({ idx, labels }) => {
        // clip(x + v) straight from the stored bytes: the batch stays a plain array down to the runtime.
        const adv = X.images(idx, v);
        const K = model.numClasses;
        const logits = await forwardLogits(model, adv);
        const pred = argmaxRows(logits, K);
        const todo = idx.map((_, j) => j).filter((j) => !criterion.done(pred[j], labels[j]));
        if (todo.length > 0) {
          // The inner attack's perturbation of each image at x + v, and whether to take it.
          const got = await step(
            todo.length === idx.length ? adv : pickImages(adv, todo),
            Int32Array.from(todo, (j) => labels[j]),
            Float32Array.from({ length: todo.length * K }, (_, t) => logits[todo[Math.floor(t / K)] * K + (t % K)]),
          );
          for (let u = 0; u < todo.length; u++) {
            if (!got.take[u]) continue;
            const r = got.r.subarray(u * size, (u + 1) * size);
            const k = o.steps === 'unit' ? length / Math.max(l2(r), 1e-12) : length;
            const into = sum ?? v;
            for (let t = 0; t < size; t++) into[t] += k * r[t];
            if (!sum) projectInPlace(v, o.norm, o.xi);
            updates++;
          }
          if (sum) v.set(projectInPlace(sum.slice(), o.norm, o.xi));
          replace(ctx, tf.tensor3d(v, [h, w, c]));
        }
        return idx.length - todo.length;
      });
      if (o.rescale) {
        const n = o.norm === 2 ? l2(v) : v.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
        if (n > 0) for (let t = 0; t < size; t++) v[t] *= o.xi / n;
        sum?.set(v);
        replace(ctx, tf.tensor3d(v, [h, w, c]));
      }
      return updates;
    },
    state: (): Record<string, Float32Array> => (sum ? { sum } : {}),
    restore(st) {
      if (st.sum) sum = st.sum;
    },
  };
  return runPasses(model, X, o, method, ctl);
}

/** Sets the pass's v, disposing the previous one. */
function replace(ctx: { v: tf.Tensor3D }, next: tf.Tensor3D): void {
  const prev = ctx.v;
  ctx.v = next;
  prev.dispose();
}

export {
  refuseResumeWithInit,
  type PassRecord,
  type Progress,
  type RunControl,
  type UniversalResult,
  type CheckpointStore,
} from './passes.js';
