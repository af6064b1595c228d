import type { Classifier } from '../classifier/classifier.js';
import type { ImageSet } from '../data/imageSet.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS } from './universal.js';
import { computeSgdUniversal, SGD_DEFAULTS } from './sgd.js';
import { computeDataFreeUniversal, DATA_FREE_DEFAULTS } from './dataFree.js';
import type { GivenOptions, MethodName } from './options.js';
import type { PassOptions, RunControl, UniversalResult } from './passes.js';
import { UsageError } from '../errors.js';
import { defaultXi } from '../math/radius.js';
import type { Norm } from '../math/lp.js';

/**
 * The crafting methods, one object each, in one registry: a method added here is known to the library,
 * the CLI (its method choices), the studio and the report. Each takes the same settings bag and
 * reads its own fields from it (the rest are other methods'); it checks them by field name ({field}
 * templates in UsageError messages, which the CLI shows as flags).
 */

/** The pass runner's options and any method's own, as a caller gives them (the schema in options.ts). */
export type AttackSettings = PassOptions & GivenOptions;

/** A universal attack as the registry holds it: its name and title, its options (defaults completed by the given settings), and `craft`. */
export interface CraftMethod {
  readonly name: string;
  /** In words, for summaries and reports. */
  readonly title: string;
  /** The method's full options: its defaults completed by the given settings (what config.json records and craft takes). */
  options(given: Partial<AttackSettings> & Pick<PassOptions, 'xi'>): AttackSettings;
  craft(model: Classifier, X: ImageSet, settings: AttackSettings, ctl?: RunControl): Promise<UniversalResult>;
}

const algorithm1: CraftMethod = {
  name: 'algorithm1',
  title: 'Algorithm 1',
  options: (given) => ({ ...ALGORITHM1_DEFAULTS, ...given }),
  craft: (model, X, settings, ctl) => computeAlgorithm1(model, X, { ...ALGORITHM1_DEFAULTS, ...settings }, ctl),
};

const sgd: CraftMethod = {
  name: 'sgd',
  title: 'SGD-UAP',
  options: (given) => ({ ...SGD_DEFAULTS, ...given }),
  craft: (model, X, settings, ctl) => computeSgdUniversal(model, X, { ...SGD_DEFAULTS, ...settings }, ctl),
};

const gduap: CraftMethod = {
  name: 'gduap',
  title: 'GD-UAP',
  options: (given) => ({ ...DATA_FREE_DEFAULTS, ...given }),
  craft: (model, X, settings, ctl) => computeDataFreeUniversal(model, X, { ...DATA_FREE_DEFAULTS, ...settings }, ctl),
};

/** The registry of universal attacks, by name: each gives its full options from the given ones and crafts a perturbation. */
export const METHODS = { algorithm1, sgd, gduap } as const satisfies Record<MethodName, CraftMethod>;
/** The name of a registered method. */
export type Method = keyof typeof METHODS;
/** The names of the registered methods, in registry order. */
export const METHOD_NAMES = Object.keys(METHODS) as Method[];

/** The method of a name, or a UsageError naming the choices. */
export function methodOf(name: string): CraftMethod {
  if (!Object.hasOwn(METHODS, name)) throw new UsageError(`{method} ${name}: expected one of ${METHOD_NAMES.join(', ')}`);
  return METHODS[name as Method];
}

/** A method's full options: its defaults, the radius for the model's input size, the given ones, the target. */
export function methodOptions(method: Method, model: Classifier, given: Partial<AttackSettings>, target?: number): AttackSettings {
  const norm = given.norm ?? ALGORITHM1_DEFAULTS.norm;
  const options = methodOf(method).options({
    xi: defaultXi(norm, model.inputShape),
    ...given,
    norm,
    ...(target !== undefined ? { target } : {}),
  });
  checkRadius(options, model.inputShape);
  return options;
}

/**
 * A radius beyond the pixel range is refused: x + v is clipped to [0, 255], so no perturbation needs
 * more than 255 per pixel (Linf) or 255 * sqrt(pixels) (L2), and a far larger one (1e308) overflows
 * to a perturbation of NaNs. The usual cause is a radius in other units.
 */
export function checkRadius(o: { norm: Norm; xi: number }, [h, w, c]: readonly number[]): void {
  const most = o.norm === 'inf' ? 255 : 255 * Math.sqrt(h * w * c);
  if (o.xi > most)
    throw new UsageError(
      `{xi} ${o.xi}: beyond what images in [0, 255] allow (${o.norm === 'inf' ? 'Linf' : 'L2'} ${most.toFixed(0)} is the whole pixel range); is it in pixel units?`,
    );
}

/** Crafts a universal perturbation with the chosen method. */
export function craft(
  model: Classifier,
  X: ImageSet,
  method: Method,
  options: AttackSettings,
  ctl: RunControl = {},
): Promise<UniversalResult> {
  return methodOf(method).craft(model, X, options, ctl);
}
