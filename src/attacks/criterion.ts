import { foolingRate } from '../evaluation/scoring.js';

/** What a pass records of a criterion's success beside the fooling rate (none for an untargeted attack). */
export interface SuccessFigures {
  /** Targeted runs: share of the images not already of the target class that v sends there. */
  targetSuccess?: number;
  /** Class-discriminative runs: fooling rate on the images of the attacked classes, and the share of the others that kept their label. */
  attackedFoolingRate?: number;
  keptRate?: number;
}

/**
 * What an attack is after, as one object (as foolbox 3's criteria): untargeted (change the label) or
 * targeted (reach one class). It owns "is this image done", which class's loss the attack drives and
 * in which direction, and the run's success rate; attacks ask it instead of testing for a target.
 */
export interface Criterion {
  /** The target class, when targeted. */
  readonly target?: number;
  /** In words: 'fooling rate' or 'targeted success rate'. */
  readonly rateName: string;
  /** An image whose reference label is `label` is done at prediction `pred`. */
  done(pred: number, label: number): boolean;
  /** The class whose loss the attack drives: the label (raised), or the target (lowered). */
  classOf(label: number): number;
  /** +1: raise the loss of the label; -1: lower the loss of the target. */
  readonly sign: 1 | -1;
  /** Class-discriminative: the attacked classes; images of the others keep their label (their loss is lowered). */
  readonly classes?: readonly number[];
  /** Whether an image of reference label `label` is to keep it rather than be attacked. */
  keeps(label: number): boolean;
  /** The run's success: the share of images fooled, or (targeted) of images not already of the target sent there. */
  successRate(clean: Int32Array, adv: Int32Array): number;
  /** What a pass (or an evaluation) records of this success beside the fooling rate. */
  figures(clean: Int32Array, adv: Int32Array): SuccessFigures;
  /** The success a record holds: the rate the stopping rule reads. */
  rateIn(r: { foolingRate: number } & SuccessFigures): number;
}

/** The untargeted criterion: an image is done when its label changes; success is the fooling rate. */
export const UNTARGETED: Criterion = {
  rateName: 'fooling rate',
  done: (pred, label) => pred !== label,
  classOf: (label) => label,
  sign: 1,
  keeps: () => false,
  successRate: foolingRate,
  figures: () => ({}),
  rateIn: (r) => r.foolingRate,
};

/** The targeted criterion: an image is done when it gets class `target`; success is the share of images that do. */
export function targetedAt(target: number): Criterion {
  return {
    target,
    rateName: 'targeted success rate',
    done: (pred) => pred === target,
    classOf: () => target,
    sign: -1,
    keeps: () => false,
    successRate(clean, adv) {
      let eligible = 0;
      let hit = 0;
      clean.forEach((c, i) => {
        if (c === target) return;
        eligible++;
        if (adv[i] === target) hit++;
      });
      return eligible ? hit / eligible : 0;
    },
    figures(clean, adv) {
      return { targetSuccess: this.successRate(clean, adv) };
    },
    rateIn: (r) => r.targetSuccess ?? 0,
  };
}

/**
 * Class-discriminative (Zhang et al., "CD-UAP", AAAI 2020): v fools the images of `classes` and leaves
 * the others' labels alone. Its success rate is the fooling rate on the attacked classes; `keptRate`
 * says how many of the other images kept their label.
 */
export function classDiscriminative(classes: readonly number[]): Criterion & { keptRate(clean: Int32Array, adv: Int32Array): number } {
  const attacked = new Set(classes);
  const share = (clean: Int32Array, adv: Int32Array, mine: (c: number) => boolean, hit: (c: number, a: number) => boolean) => {
    let n = 0;
    let k = 0;
    clean.forEach((c, i) => {
      if (!mine(c)) return;
      n++;
      if (hit(c, adv[i])) k++;
    });
    return n ? k / n : 0;
  };
  const c: Criterion & { keptRate(clean: Int32Array, adv: Int32Array): number } = {
    classes,
    rateName: 'fooling rate on the attacked classes',
    // An image of another class is "done" while it keeps its label.
    done: (pred: number, label: number) => (attacked.has(label) ? pred !== label : pred === label),
    classOf: (label: number) => label,
    sign: 1 as const,
    keeps: (label: number) => !attacked.has(label),
    successRate: (clean: Int32Array, adv: Int32Array) =>
      share(
        clean,
        adv,
        (c) => attacked.has(c),
        (c, a) => a !== c,
      ),
    keptRate: (clean: Int32Array, adv: Int32Array) =>
      share(
        clean,
        adv,
        (c) => !attacked.has(c),
        (c, a) => a === c,
      ),
    figures: (clean: Int32Array, adv: Int32Array): SuccessFigures => ({
      attackedFoolingRate: c.successRate(clean, adv),
      keptRate: c.keptRate(clean, adv),
    }),
    rateIn: (r: SuccessFigures) => r.attackedFoolingRate ?? 0,
  };
  return c;
}

/** The criterion of an optional target, or of attacked classes (class-discriminative). */
export function criterionOf(target: number | undefined, classes?: readonly number[]): Criterion {
  if (classes?.length) return classDiscriminative(classes);
  return target === undefined ? UNTARGETED : targetedAt(target);
}
