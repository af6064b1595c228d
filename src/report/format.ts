import { wilsonInterval } from '../math/interval.js';

/** A rate as a percentage with one decimal; `none` when there is none. */
export const pct = (x: unknown, none = '-'): string => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : none);

/** A rate of n images with its 95% Wilson interval: "66.2% (95% CI 61.9-70.2%, n = 500)". */
export const pctCI = (rate: number, n: number): string => {
  const [lo, hi] = wilsonInterval(rate, n);
  return `${pct(rate)} (95% CI ${(lo * 100).toFixed(1)}-${(hi * 100).toFixed(1)}%)`;
};
