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
  /** The run's success: the share of images fooled, or (targeted) of images not already of the target sent there. */
  successRate(clean: Int32Array, adv: Int32Array): number;
}

export const UNTARGETED: Criterion = {
  rateName: 'fooling rate',
  done: (pred, label) => pred !== label,
  classOf: (label) => label,
  sign: 1,
  successRate(clean, adv) {
    let changed = 0;
    for (let i = 0; i < clean.length; i++) if (clean[i] !== adv[i]) changed++;
    return clean.length ? changed / clean.length : 0;
  },
};

export function targetedAt(target: number): Criterion {
  return {
    target,
    rateName: 'targeted success rate',
    done: (pred) => pred === target,
    classOf: () => target,
    sign: -1,
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
  };
}

/** The criterion of an optional target. */
export function criterionOf(target: number | undefined): Criterion {
  return target === undefined ? UNTARGETED : targetedAt(target);
}
