import { METHODS, type Method } from '../attacks/methods.js';
import { wilsonInterval } from '../math/interval.js';

import { pct } from '../math/percent.js';

export { pct };

/** Two rates as a range of percents, one decimal, no sign: "61.9-70.2" (an interval, a spread). */
export const pctRange = ([lo, hi]: readonly [number, number]): string => `${(lo * 100).toFixed(1)}-${(hi * 100).toFixed(1)}`;

/** A rate of n images with its 95% Wilson interval: "66.2% (95% CI 61.9-70.2%)". */
export const pctCI = (rate: number, n: number): string => `${pct(rate)} (95% CI ${pctRange(wilsonInterval(rate, n))}%)`;

/** The same, short, for table cells: "66.2% (61.9-70.2)". */
export const pctInterval = (rate: number, n: number): string => `${pct(rate)} (${pctRange(wilsonInterval(rate, n))})`;

const INNER_NAMES: Record<string, string> = { fgsm: 'FGSM', pgd: 'PGD', newtonfool: 'NewtonFool', cw: 'C&W-L2' };

/** A crafting method in words (its registry title): "SGD-UAP", "Algorithm 1", or "Algorithm 1 (PGD inside)". */
export function methodName(c: { method?: unknown; inner?: unknown; prior?: unknown; classes?: unknown }): string {
  const title =
    typeof c.method === 'string' && Object.hasOwn(METHODS, c.method) ? METHODS[c.method as Method].title : METHODS.algorithm1.title;
  const inner = typeof c.inner === 'string' ? INNER_NAMES[c.inner] : undefined;
  if (inner) return `${title} (${inner} inside)`;
  if (c.method === 'gduap' && typeof c.prior === 'string') return `${title} (${c.prior === 'none' ? 'no data' : `${c.prior} prior`})`;
  if (Array.isArray(c.classes)) return `${title}, class-discriminative`;
  return title;
}
