import type { Classifier } from '../classifier/classifier.js';
import type { Batch } from '../math/batch.js';
import type { Norm } from '../math/lp.js';
import { deepfool } from './deepfool.js';
import { innerAttack } from './inner.js';

/**
 * The attacks Algorithm 1 can use to move each image across its boundary (ART's UniversalPerturbation
 * `attacker`), behind one interface: DeepFool (the paper's) and the gradient attacks of inner.ts. The
 * pass calls the step it is given; adding an attack is one entry in INNER_STEPS.
 */

export type InnerKind = 'deepfool' | 'fgsm' | 'pgd' | 'newtonfool' | 'cw';

/** Each image's perturbation at x + v, and whether the pass takes it. */
export interface InnerStep {
  /** [n * H * W * C] perturbations. */
  r: Float32Array;
  take: boolean[];
}

/** One batch: the images at x + v not yet done, their labels (clean predictions), and their logits there. */
export type InnerAttackRun = (x: Batch, labels: Int32Array, logits: Float32Array) => Promise<InnerStep>;

/** The settings of Algorithm 1 an inner attack reads. */
export interface InnerSettings {
  inner?: InnerKind;
  norm: Norm;
  xi: number;
  target?: number;
  /** 'converged' (default): only steps that crossed the boundary (fooled) are taken; 'all': every step. */
  accept?: 'converged' | 'all';
  overshoot: number;
  candidates: number;
  deepfoolSteps: number;
  deepfoolNorm: 2 | 'match';
  maxGradientRows?: number;
  innerEps?: number;
  innerSteps?: number;
  innerStepSize?: number;
}

const gradientAttack =
  (kind: 'fgsm' | 'pgd' | 'newtonfool' | 'cw') =>
  (model: Classifier, o: InnerSettings): InnerAttackRun =>
  async (x, labels) => {
    const res = await innerAttack(model, x, {
      kind,
      norm: o.norm,
      eps: o.innerEps ?? o.xi,
      steps: o.innerSteps,
      stepSize: o.innerStepSize,
      labels,
      target: o.target,
    });
    return { r: res.r, take: res.fooled.map((f) => f || o.accept === 'all') };
  };

const INNER_STEPS: Record<InnerKind, (model: Classifier, o: InnerSettings) => InnerAttackRun> = {
  deepfool: (model, o) => async (x, labels, logits) => {
    const df = await deepfool(model, x, {
      norm: o.deepfoolNorm === 'match' ? o.norm : 2,
      candidates: o.candidates,
      overshoot: o.overshoot,
      maxSteps: o.deepfoolSteps,
      labels,
      maxRows: o.maxGradientRows,
      target: o.target,
      logits,
    });
    return {
      r: df.r,
      take: df.status.map((st) => st === 'converged' || (o.accept === 'all' && st === 'maxSteps')),
    };
  },
  fgsm: gradientAttack('fgsm'),
  pgd: gradientAttack('pgd'),
  newtonfool: gradientAttack('newtonfool'),
  cw: gradientAttack('cw'),
};

/** The inner attacks by name, in the order the CLI lists them. */
export const INNER_ATTACKS = Object.keys(INNER_STEPS) as InnerKind[];

/** The inner attack Algorithm 1's settings choose (DeepFool by default), bound to the model. */
export function innerStepOf(model: Classifier, o: InnerSettings): InnerAttackRun {
  return INNER_STEPS[o.inner ?? 'deepfool'](model, o);
}
