import { join } from 'node:path';
import { writeAtomic } from '../io/atomic.js';
import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import type { ImageSource } from '../data/source.js';
import type { Evaluation } from '../evaluation/scoring.js';
import { perturb } from '../math/perturb.js';
import { writeNpy } from '../io/npy.js';
import { pct } from '../math/percent.js';
import { Rng } from '../math/random.js';
import { writePerturbationPng, writeGridPng, visiblePerturbation, type GridCell } from '../io/pictures.js';
import type { ImageShape } from '../math/imageShape.js';

/** A text file, atomically, creating the folder. */
export function writeText(file: string, text: string): void {
  writeAtomic(file, text);
}

/** Pretty JSON (typed arrays left out), atomically, creating the folder. */
export function writeJson(file: string, value: unknown): void {
  writeAtomic(file, JSON.stringify(value, (_k, v) => (v instanceof Int32Array || v instanceof Float32Array ? undefined : v), 2) + '\n');
}

/** The first name of a label ("tench, Tinca tinca" -> "tench"). */
export function shortLabel(model: Classifier, i: number): string {
  const l = model.labels?.[i];
  return l ? l.split(',')[0].trim() : `#${i}`;
}

/** perturbation.npy (float32 HWC, pixel units) and perturbation.png (scaled for visibility). */
export async function writePerturbation(dir: string, v: tf.Tensor3D): Promise<void> {
  const data = (await v.data()) as Float32Array;
  const shape = v.shape as ImageShape;
  writeNpy(join(dir, 'perturbation.npy'), { data, shape });
  await writePerturbationPng(join(dir, 'perturbation.png'), data, shape);
}

/**
 * examples.png: for a few images, the clean image with its label, the perturbed image with the new
 * label (red when it changed), and the perturbation itself. Fooled images are preferred.
 */
export async function writeExamples(
  file: string,
  model: Classifier,
  set: ImageSource,
  v: tf.Tensor3D,
  ev: Evaluation,
  count = 6,
  seed = 0,
): Promise<void> {
  // A seeded random sample, said in the title: picking fooled images first would flatter v.
  const pick = new Rng(seed)
    .permutation(set.size)
    .slice(0, count)
    .sort((a, b) => a - b);
  const fooledShown = pick.filter((i) => ev.cleanPred[i] !== ev.advPred[i]).length;
  const picked = await set.pick(pick);
  const x = tf.tensor4d(Float32Array.from(picked), [pick.length, set.shape[0], set.shape[1], set.shape[2]]);
  const adv = tf.tidy(() => perturb(x, v));
  const advPx = Uint8Array.from(await adv.data(), (p) => Math.round(p));
  const vis = visiblePerturbation((await v.data()) as Float32Array);
  tf.dispose([x, adv]);
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const clean: GridCell[] = [];
  const perturbed: GridCell[] = [];
  pick.forEach((i, k) => {
    clean.push({ pixels: picked.subarray(k * per, (k + 1) * per), caption: shortLabel(model, ev.cleanPred[i]) });
    const changed = ev.advPred[i] !== ev.cleanPred[i];
    perturbed.push({
      pixels: advPx.subarray(k * per, (k + 1) * per),
      caption: (changed ? '→ ' : '= ') + shortLabel(model, ev.advPred[i]),
      alert: changed,
    });
  });
  const rows = [clean, perturbed, [{ pixels: vis, caption: 'v (scaled)' }]];
  await writeGridPng(
    file,
    rows,
    set.shape,
    `${model.name}: ${pick.length} random images (seed ${seed}), ${fooledShown} fooled; all ${set.size}: ${pct(ev.foolingRate)}`,
  );
}
