/**
 * How far SGD-UAP's steps can carry v (no TF.js here: the studio's page imports it). Its step length
 * starts at xi / 10 and shrinks by `lrDecay` after every pass, so with few steps a pass (a small X: 16
 * images at a minibatch of 32 are one step) v cannot reach the ball's surface in a few passes: after
 * 5 passes of one step, at most 41% of xi.
 */

/** Share of xi that `passes` passes of `stepsPerPass` steps can cover at most (all steps in one direction). */
export function reachableShare(passes: number, stepsPerPass: number, lrDecay = 0.9): number {
  const perPass = stepsPerPass / 10;
  return lrDecay === 1 ? perPass * passes : (perPass * (1 - lrDecay ** passes)) / (1 - lrDecay);
}

/** Fewest passes whose steps can cover `share` of xi; undefined when no number of passes can. */
export function passesToReach(share: number, stepsPerPass: number, lrDecay = 0.9): number | undefined {
  for (let p = 1; p <= 1000; p++) if (reachableShare(p, stepsPerPass, lrDecay) >= share) return p;
  return undefined;
}
