import { UsageError } from '../../errors.js';
import { SAMPLING_DEFAULTS, type SamplingOptions } from '../sampling.js';

/** How fine-tuning hardens a model: which defence, how many rounds and epochs, the learning rate, how images are perturbed, and the accuracy guard. */
export interface FinetuneOptions {
  /**
   * 'pool': the paper's fine-tuning on a pool of universal perturbations crafted before each round;
   * 'uat': universal adversarial training (Shafahi et al.), one perturbation trained with the weights.
   */
  defence: 'pool' | 'uat';
  /** uat: length of the perturbation's ascent step per minibatch, in the ball's norm (default xi / 5). */
  uatStep?: number;
  /** Fine-tune / re-attack rounds (the paper: fooling rate falls in round 1, little more after). */
  rounds: number;
  /** Universal perturbations precomputed per round for training. */
  poolSize: number;
  epochs: number;
  batchSize: number;
  /** Adam learning rate (an epoch that costs more than maxAccuracyDrop is retried at a tenth of it, twice at most). */
  learningRate: number;
  sampling: SamplingOptions;
  /** Largest fall of clean validation accuracy (0.05 = 5 points) below the original model's; an epoch past it is undone. */
  maxAccuracyDrop: number;
  /**
   * What the network is trained to answer: 'model' (its own clean top-1 label of each image: the
   * perturbed image must get the label the clean one got, i.e. invariance) or 'truth' (the data's
   * labels, as the paper on the full ImageNet training set). With a few hundred images, 'truth'
   * pulls the network toward memorising them and costs clean accuracy.
   */
  trainLabels: 'model' | 'truth';
  seed: number;
}

/** Fine-tuning's defaults: the pool defence, one round of 10 perturbations, 3 epochs, and an accuracy guard of 5 points. */
export const FINETUNE_DEFAULTS: FinetuneOptions = {
  defence: 'pool',
  rounds: 1,
  poolSize: 10,
  epochs: 3,
  batchSize: 32,
  learningRate: 1e-4,
  sampling: SAMPLING_DEFAULTS,
  maxAccuracyDrop: 0.05,
  trainLabels: 'model',
  seed: 0,
};

/** A field of FinetuneOptions, nested ones by their path. */
type OptionField = Exclude<keyof FinetuneOptions, 'sampling'> | `sampling.${keyof SamplingOptions}`;

/** A bad option, named by its field: a top-level one as an {option} template (src/errors.ts), a nested one by its path (no template spells one). */
function refuse(field: OptionField, expected: string, got: unknown): never {
  throw new UsageError(`${field.includes('.') ? field : `{${field}}`}: expected ${expected}, got ${String(got)}`);
}

const isCount = (n: number) => Number.isInteger(n) && n >= 1;
const isShare = (n: number) => n >= 0 && n <= 1;

/** Every option in its range; the first that is not is refused by its field. */
function checkOptions(o: FinetuneOptions): void {
  for (const field of ['rounds', 'poolSize', 'epochs', 'batchSize'] as const)
    if (!isCount(o[field])) refuse(field, 'an integer >= 1', o[field]);
  if (!(o.learningRate > 0)) refuse('learningRate', 'a positive number', o.learningRate);
  if (!isShare(o.sampling.probability)) refuse('sampling.probability', 'a number in [0, 1]', o.sampling.probability);
  const [lo, hi] = o.sampling.scale;
  if (!(lo >= 0 && hi >= lo)) refuse('sampling.scale', '[lo, hi] with 0 <= lo <= hi', o.sampling.scale);
  if (!isShare(o.maxAccuracyDrop)) refuse('maxAccuracyDrop', 'a number in [0, 1]', o.maxAccuracyDrop);
  if (o.trainLabels !== 'model' && o.trainLabels !== 'truth') refuse('trainLabels', 'model or truth', o.trainLabels);
  if (o.defence !== 'pool' && o.defence !== 'uat') refuse('defence', 'pool or uat', o.defence);
  if (o.uatStep !== undefined && !(o.uatStep > 0 && Number.isFinite(o.uatStep))) refuse('uatStep', 'a positive number', o.uatStep);
}

/** A job's options over the defaults (sampling field by field), checked. */
export function finetuneOptions(given: Partial<FinetuneOptions> = {}): FinetuneOptions {
  const o: FinetuneOptions = { ...FINETUNE_DEFAULTS, ...given, sampling: { ...FINETUNE_DEFAULTS.sampling, ...given.sampling } };
  checkOptions(o);
  return o;
}
