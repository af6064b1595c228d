import * as tf from '@tensorflow/tfjs';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import { projectLp } from '../math/lp.js';
import { predictLabels } from '../model/compute.js';
import { deepfool, type DeepFoolResult } from './deepfool.js';
import { perturb } from '../math/perturb.js';
import { UsageError } from '../errors.js';
import { forEachBatch, runPasses, type PassMethod, type PassOptions, type RunControl, type UniversalResult } from './passes.js';
import { takeRows } from '../math/rows.js';

export interface UniversalOptions extends PassOptions {
  overshoot: number;
  candidates: number;
  deepfoolSteps: number;
  /**
   * Norm of the inner DeepFool step: 2 (the paper's code, whatever the ball) or 'match' (the Lp
   * DeepFool of the ball's norm: sign steps for Linf, which fill the Linf ball in fewer updates).
   */
  deepfoolNorm: 2 | 'match';
  /** Cap on images x candidates per backward pass (memory). */
  maxGradientRows?: number;
}

export const UNIVERSAL_DEFAULTS: Omit<UniversalOptions, 'xi'> & { xi?: number } = {
  norm: 'inf',
  delta: 0.2,
  maxPasses: 10,
  overshoot: 0.02,
  candidates: 10,
  // The reference UAP code caps DeepFool at 10 steps inside Algorithm 1 and drops unconverged steps;
  // images that have not crossed by then rarely do, and they would cost 5x the gradients at 50.
  deepfoolSteps: 10,
  deepfoolNorm: 2,
  batchSize: 16,
  seed: 0,
};

export function validateUniversalOptions(o: UniversalOptions): void {
  const bad = (flag: string, what: string) => {
    throw new UsageError(`--${flag}: ${what}`);
  };
  if (!(o.overshoot >= 0)) bad('overshoot', `expected a number >= 0, got ${o.overshoot}`);
  if (!Number.isInteger(o.candidates) || o.candidates < 2) bad('candidates', `expected an integer >= 2, got ${o.candidates}`);
  if (!Number.isInteger(o.deepfoolSteps) || o.deepfoolSteps < 1) bad('deepfool-steps', `expected an integer >= 1, got ${o.deepfoolSteps}`);
  if (o.deepfoolNorm !== 2 && o.deepfoolNorm !== 'match') bad('deepfool-norm', `expected 2 or match, got ${String(o.deepfoolNorm)}`);
}

/**
 * Algorithm 1 of Moosavi-Dezfooli et al. (CVPR 2017). Passes over X in a seeded order; per batch,
 * one forward pass finds the images x with k(x+v) = k(x) (targeted: k(x+v) != target); one batched
 * DeepFool call at x+v gives each its minimal extra perturbation (targeted: towards the target); v is
 * updated and projected onto the Lp ball after EACH image, as in the paper. DeepFool takes its L2
 * step by default (as the paper's code does; the Linf constraint then comes from the projection).
 * Only converged DeepFool results are added (as the reference code does).
 */
export async function computeUniversal(model: Classifier, X: ImageSet, options: UniversalOptions, ctl: RunControl = {}): Promise<UniversalResult> {
  const o = options;
  validateUniversalOptions(o);
  const [h, w, c] = model.inputShape;
  const method: PassMethod = {
    name: 'algorithm1',
    settings: { overshoot: o.overshoot, candidates: o.candidates, deepfoolSteps: o.deepfoolSteps, deepfoolNorm: o.deepfoolNorm },
    async pass(ctx) {
      let updates = 0;
      await forEachBatch(ctx, X, o.batchSize, async ({ idx, labels, x }) => {
        const adv = tf.tidy(() => perturb(x, ctx.v));
        let sub: tf.Tensor4D | undefined;
        let df: DeepFoolResult | undefined;
        try {
          const pred = await predictLabels(model, adv);
          const todo = idx.map((_, j) => j).filter((j) => (o.target !== undefined ? pred[j] !== o.target : pred[j] === labels[j]));
          if (todo.length > 0) {
            sub = takeRows(adv, todo);
            df = await deepfool(model, sub, {
              norm: o.deepfoolNorm === 'match' ? o.norm : 2, candidates: o.candidates, overshoot: o.overshoot, maxSteps: o.deepfoolSteps,
              labels: Int32Array.from(todo, (j) => labels[j]), maxRows: o.maxGradientRows, target: o.target,
            });
            // Every step of this batch was computed at the batch-start v; v is projected after each one.
            for (let u = 0; u < todo.length; u++) {
              if (df.status[u] !== 'converged') continue;
              const r = df.r;
              const prev = ctx.v;
              ctx.v = tf.tidy(() => projectLp(tf.add(prev, r.slice([u, 0, 0, 0], [1, h, w, c]).reshape([h, w, c])) as tf.Tensor3D, o.norm, o.xi));
              prev.dispose();
              updates++;
            }
          }
          return idx.length - todo.length;
        } finally {
          tf.dispose([adv, ...(sub ? [sub] : []), ...(df ? [df.r] : [])]);
        }
      });
      return updates;
    },
  };
  return runPasses(model, X, o, method, ctl);
}

export { refuseResumeWithInit, type PassRecord, type Progress, type RunControl, type UniversalResult } from './passes.js';
