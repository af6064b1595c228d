import { ratesDiffer } from '../math/interval.js';
import { pct } from './format.js';

interface Rate {
  foolingRate: number;
  images: number;
}
interface Noise {
  norm: 2 | 'inf';
  mean: number;
}

/**
 * What a reader of a run's numbers must not miss (the CLI summary and the report both say it): v no
 * better than random noise of its norm, or fitted to X (its rates on X and on validation further
 * apart than their 95% intervals allow). Options are {option} templates (the CLI shows flags, the report names).
 */
export function runWarnings(s: { onX: Rate; onVal?: Rate | null; randomOnVal?: { sameLp: Noise; sameL2: Noise } | null }): string[] {
  const warnings: string[] = [];
  const { onX, onVal, randomOnVal: r } = s;
  if (!onVal) return warnings;
  for (const b of r ? [r.sameLp, r.sameL2] : [])
    if (onVal.foolingRate <= b.mean)
      warnings.push(
        `v fools ${pct(onVal.foolingRate)} of the validation images, no more than random noise of the same ${b.norm === 2 ? 'L2' : 'Linf'} norm (${pct(b.mean)}): it is not a universal perturbation yet (more passes, a larger {xi}, or {method} sgd)`,
      );
  if (onX.foolingRate > onVal.foolingRate && ratesDiffer(onX.foolingRate, onX.images, onVal.foolingRate, onVal.images))
    warnings.push(
      `v fools ${pct(onX.foolingRate)} of X but ${pct(onVal.foolingRate)} of the validation images, more apart than their 95% intervals allow: it is fitted to X (more images in X narrow the gap)`,
    );
  return warnings;
}
