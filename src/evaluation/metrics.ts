import type * as tf from '../tf.js';
import { labelName, type Classifier } from '../classifier/classifier.js';
import { lpNorm, type Norm } from '../math/lp.js';
import type { Evaluation } from './scoring.js';
import type { Baseline } from './noiseScore.js';

/** An evaluation without its per-image predictions (what metrics files hold). */
export function evaluationSummary(e: Evaluation): Omit<Evaluation, 'cleanPred' | 'advPred'> {
  const { cleanPred: _c, advPred: _a, ...rest } = e;
  return rest;
}

/** The figures of metrics.json but the per-class detail (the run folder's files: src/run/files.ts). */
export interface RunMetrics<R> {
  norm: Norm;
  xi: number;
  normL2: number;
  normInf: number;
  run: R;
  onX: Omit<Evaluation, 'cleanPred' | 'advPred'>;
  onVal: Omit<Evaluation, 'cleanPred' | 'advPred'> | null;
  randomNoiseOnVal: { sameLp: Baseline; sameL2: Baseline } | null;
  target: { index: number; name: string; successOnX: number | null; successOnVal: number | null } | null;
  classDiscriminative?: { classes: number[]; onVal: { attacked: number; kept: number } };
}

/**
 * metrics.json of a crafted perturbation: one format for `uap compute` and the studio's download.
 * `run` is the run's result without v and the clean labels.
 */
export function runMetrics<R extends { targetSuccess?: number }>(
  model: Classifier,
  v: tf.Tensor3D,
  attack: { norm: Norm; xi: number; target?: number; classes?: number[] },
  run: R,
  onX: Evaluation,
  validation: {
    onVal?: Evaluation;
    randomNoiseOnVal?: { sameLp: Baseline; sameL2: Baseline };
    targetOnVal?: number;
    classesOnVal?: { attacked: number; kept: number };
  } = {},
): RunMetrics<R> {
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
    ...(classesOnVal && attack.classes ? { classDiscriminative: { classes: attack.classes, onVal: classesOnVal } } : {}),
  };
}
