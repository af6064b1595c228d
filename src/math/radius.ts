import type { ImageShape } from './imageShape.js';
/** The norms the paper uses: Euclidean (2) and max-abs (inf). */
export type Norm = 2 | 'inf';

/**
 * The paper's radius: Linf 10; L2 2000 at 224x224x3, scaled by sqrt(pixels) for other sizes (same RMS).
 * Its own module, free of TF.js, so the studio page can use it without loading TF.js.
 */
export function defaultXi(norm: Norm, shape: ImageShape): number {
  if (norm === 'inf') return 10;
  const d = shape[0] * shape[1] * shape[2];
  return Math.round(2000 * Math.sqrt(d / (224 * 224 * 3)));
}
