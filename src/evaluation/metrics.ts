import type * as tf from '../tf.js';
import { labelName, type Classifier } from '../classifier/classifier.js';
import { lpNorm, type Norm } from '../math/lp.js';
import type { Evaluation } from './scoring.js';

/** An evaluation without its per-image predictions (what metrics files hold). */
export function evaluationSummary(e: Evaluation): Omit<Evaluation, 'cleanPred' | 'advPred'> {
  const { cleanPred: _c, advPred: _a, ...rest } = e;
  return rest;
}

/**
 * metrics.json of a crafted perturbation: one format for `uap compute` and the studio's download.
 * `run` is the run's result without v and the clean labels.
 */
export function runMetrics(
  model: Classifier,
  v: tf.Tensor3D,
  attack: { norm: Norm; xi: number; target?: number },
  run: { targetSuccess?: number } & Record<string, unknown>,
  onX: Evaluation,
  validation: {
    onVal?: Evaluation;
    randomNoiseOnVal?: unknown;
    targetOnVal?: number;
    classesOnVal?: { attacked: number; kept: number };
  } = {},
): Record<string, unknown> {
  const { onVal, randomNoiseOnVal, targetOnVal, classesOnVal } = validation;
  const t = attack.target;
  return {
    norm: attack.norm,
    xi: attack.xi,
    normL2: lpNorm(v, 2),
    normInf: lpNorm(v, 'inf'),
    run,
    onX: evaluationSummary(onX),
    onVal: onVal ? evaluationSummary(onVal) : null,
    randomNoiseOnVal: randomNoiseOnVal ?? null,
    target:
      t !== undefined
        ? { index: t, name: labelName(model, t), successOnX: run.targetSuccess ?? null, successOnVal: targetOnVal ?? null }
        : null,
    ...(classesOnVal ? { classDiscriminative: { classes: (attack as { classes?: number[] }).classes, onVal: classesOnVal } } : {}),
  };
}
