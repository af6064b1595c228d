import { checkFormat, type PerturbationFormat } from '../perturbation/file.js';
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { parseNorm, type Norm } from '../math/lp.js';
import { ALGORITHM1_VARIANTS, type Algorithm1Variant } from '../attacks/universal.js';
import { flagName, helpLine, MAX_BATCH, OPTION_NAMES, OPTIONS, parseWord, type GivenOptions } from '../attacks/options.js';
import { METHOD_NAMES, type AttackSettings, type Method } from '../attacks/methods.js';
import type { DataSpec } from '../data/sets.js';
import type { CardOverrides } from '../import/load.js';
import type { ModelCard } from '../classifier/card.js';
import { resolve } from 'node:path';
import type { Backend } from '../engine/backend.js';
import type { ImageShape } from '../math/imageShape.js';

/** Flag value parsers: each error names the flag and what it expected. */
export function number(flag: string, check: (n: number) => boolean = () => true, expected = 'a number') {
  return (s: string): number => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${flag} ${s}: expected ${expected}`);
    return n;
  };
}
export const positive = (flag: string) => number(flag, (n) => n > 0, 'a positive number');
/** A whole count: `min` to `max` (a bound where a larger value loses its meaning or cannot be allocated). */
export const count = (flag: string, min = 1, max = Number.MAX_SAFE_INTEGER) =>
  number(
    flag,
    (n) => Number.isSafeInteger(n) && n >= min && n <= max,
    max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`,
  );
/**
 * The embedded model's radius when none is given, as in the demo: Linf 10 (the paper's ImageNet
 * radius) barely moves a 28x28 Fashion-MNIST network (about 12% fooled), Linf 40 does.
 */
export function embeddedRadius(cmd: Command, flags: Record<string, unknown>): void {
  if (flags.model === 'fashion' && (flags.norm ?? OPTIONS.norm.default) === 'inf' && cmd.getOptionValueSource('xi') !== 'cli')
    flags.xi = 40;
}

export { MAX_BATCH };

export function norm(s: string): Norm {
  const p = parseNorm(s);
  if (p === undefined) throw new UsageError(`--norm ${s}: expected 2 or inf`);
  return p;
}

function shape(s: string): ImageShape {
  const m = /^(\d+)x(\d+)x([13])$/.exec(s.trim());
  if (!m) throw new UsageError(`--input-shape ${s}: expected HxWxC with C 1 or 3, e.g. 224x224x3`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function labelSpace(s: string): 'imagenet' | 'own' {
  if (s !== 'imagenet' && s !== 'own') throw new UsageError(`--label-space ${s}: expected imagenet or own`);
  return s;
}

/** A comma-separated list of numbers, each passing `check` (`expected` and `example` for the message). */
export function numberList(flag: string, check: (n: number) => boolean = () => true, expected = 'numbers', example = '123.7,116.3,103.5') {
  return (s: string): number[] => {
    const v = s.split(',').map((x) => (x.trim() === '' ? NaN : Number(x)));
    if (v.some((n) => !Number.isFinite(n) || !check(n)))
      throw new UsageError(`--${flag} ${s}: expected comma-separated ${expected}, e.g. ${example}`);
    return v;
  };
}

/** --model, --assets, --backend and the model-card flags: every command that runs a model takes them. */
/** Help text of every command's --assets flag. */
export const ASSETS_HELP =
  'folder of the shared ImageNet models and images (default: $UAP_ASSETS; in a checkout of the project, ../shared/assets)';

export const BACKEND_HELP =
  'where models run: webgpu (ONNX Runtime on a GPU; the default where a GPU is found and passes the self-check), onnx (ONNX Runtime on the CPU; the default otherwise), wasm or cpu (TF.js)';

export function addModelFlags(cmd: Command, defaultModel: string): Command {
  return cmd
    .option(
      '-m, --model <name|path>',
      'bundled model name, model card, .onnx file (a PyTorch export), model folder/model.json with card.json beside it, or a .tflite file',
      defaultModel,
    )
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', BACKEND_HELP)
    .option('--input-shape <HxWxC>', 'card: model input size, e.g. 224x224x3', shape)
    .option('--num-classes <n>', 'card: number of classes', count('num-classes', 2))
    .option('--scale <s>', 'card: model input = pixel * scale + offset', number('scale'))
    .option('--offset <o>', 'card: see --scale', number('offset'))
    .option('--mean <r,g,b>', 'card: model input = (pixel - mean) / std', numberList('mean'))
    .option('--std <r,g,b>', 'card: see --mean', numberList('std'))
    .option('--bgr', 'card: the model takes BGR channel order')
    .option(
      '--logits-layer <name>',
      'card: layer (LayersModel), node (GraphModel), tensor (TFLite) or value (ONNX) giving pre-softmax logits',
    )
    .option('--probabilities', 'card: that output is probabilities (log-probabilities are used as logits)')
    .option('--class-names <file>', 'card: label names, one per line')
    .option('--background-class', 'card: output 0 is a background class to drop (1001-output ImageNet models)')
    .option('--label-space <space>', 'card: "imagenet" (labels are standard ImageNet indices, wnid file names work) or "own"', labelSpace);
}

/** The card fields given as flags (they complete or override the model's card). */
export function cardOverrides(f: Record<string, unknown>): CardOverrides {
  const o: CardOverrides = {};
  const pre: ModelCard['preprocess'] = {};
  if (f.inputShape) o.inputShape = f.inputShape as ImageShape;
  if (f.numClasses) o.numClasses = f.numClasses as number;
  if (f.scale !== undefined) pre.scale = f.scale as number;
  if (f.offset !== undefined) pre.offset = f.offset as number;
  if (f.mean) pre.mean = f.mean as number[];
  if (f.std) pre.std = f.std as number[];
  if (f.bgr) pre.channelOrder = 'BGR';
  if (Object.keys(pre).length) o.preprocess = pre;
  if (f.logitsLayer) o.logitsLayer = f.logitsLayer as string;
  if (f.probabilities) o.outputIsProbabilities = true;
  if (f.classNames) o.labels = resolve(f.classNames as string);
  if (f.backgroundClass) o.outputMap = { dropFirst: 1 };
  if (f.labelSpace) o.labelSpace = f.labelSpace as 'imagenet' | 'own';
  return o;
}

export function addDataFlags(cmd: Command): Command {
  return cmd
    .option('-d, --data <dir>', 'crafting set X: folder of class subfolders, wnid-named files, or with dataset.txt (default by model)')
    .option('--val <dir>', 'validation folder (default by model; "none" to skip)')
    .option('--labels <file>', 'labels file for --data: lines "path, index"')
    .option('--val-labels <file>', 'labels file for --val')
    .option('--limit <n>', 'use at most n images of X (the first in sorted order)', count('limit'))
    .option('--val-limit <n>', 'use at most n validation images (the first in sorted order)', count('val-limit'))
    .option(
      '--sample <n>',
      'use n images of X drawn at random (seeded by --seed): every class of a class-folder set, not the first',
      count('sample'),
    )
    .option('--val-sample <n>', 'use n validation images drawn at random (seeded by --seed)', count('val-sample'))
    .option('--strict', 'stop on the first image that cannot be decoded (default: skip and warn)')
    .option('--allow-partial', 'use the whole members of a tar shard that is cut short (default: refuse it)');
}

/**
 * The attack flags: `--method`, one flag per option of the schema (src/attacks/options.ts: its help,
 * parser and range; the library fills the defaults), `--variant` and `--target`. `defaults` changes a
 * command's default method or pass cap (finetune: sgd, 5).
 */
export function addAttackFlags(cmd: Command, defaults: { method?: Method; maxPasses?: number } = {}): Command {
  cmd.addOption(
    new Option(
      '--method <m>',
      "algorithm1 (the paper: DeepFool steps), sgd (SGD-UAP: minibatch gradient ascent) or gduap (GD-UAP / Fast Feature Fool: maximises the convolutions' activations, data-free with --prior none or range)",
    )
      .choices(METHOD_NAMES)
      .default(defaults.method ?? 'algorithm1'),
  );
  for (const name of OPTION_NAMES) {
    const spec = OPTIONS[name];
    const flag = `${'short' in spec ? `${spec.short}, ` : ''}--${flagName(name)} ${spec.arg}`;
    // A command's own default (finetune's pass cap) is passed; the schema's are filled by the library.
    const own = name === 'maxPasses' ? defaults.maxPasses : undefined;
    const option = new Option(flag, helpLine(name, own)).argParser((word: string) => parseWord(name, word));
    if (own !== undefined) option.default(own);
    cmd.addOption(option);
  }
  return cmd
    .addOption(
      new Option(
        '--variant <v>',
        'algorithm1: accumulated (default: unit DeepFool directions summed, the sum projected; strong with 200-1000 images) or paper (the reference code: minimal steps, v projected after each; needs ~10,000 images); --projection, --steps and --step-size override it',
      ).choices(['accumulated', 'paper']),
    )
    .option('--target <label>', 'targeted: push every image to this class (index or label name); reports the targeted success rate');
}

/** The attack flags as commander parses them (camel-cased): any option of the schema, and the variant. */
export type AttackFlags = GivenOptions & { variant?: Algorithm1Variant };

export function attackOptions(f: AttackFlags): Partial<AttackSettings> {
  // A variant is a preset of projection, steps and step size; flags given beside it win. --steps alone
  // brings its own default length (unit 0.5 of the ball, minimal x1).
  const given = Object.fromEntries(OPTION_NAMES.filter((k) => f[k] !== undefined).map((k) => [k, f[k]])) as Partial<AttackSettings>;
  const stepDefault =
    f.steps && f.stepSize === undefined
      ? { stepSize: (f.steps === 'unit' ? ALGORITHM1_VARIANTS.accumulated : ALGORITHM1_VARIANTS.paper).stepSize }
      : {};
  return { ...(f.variant ? ALGORITHM1_VARIANTS[f.variant] : {}), ...stepDefault, ...given };
}

/** One image folder to score (evaluate, accuracy): data, labels, limit, batch size, strict. */
export function addScoringFlags(cmd: Command, what: string): Command {
  return cmd
    .option('-d, --data <dir>', `${what} (default: the model's validation set)`)
    .option('--labels <file>', 'labels file: lines "path, index"')
    .option('--limit <n>', 'use at most n images', count('limit'))
    .option(
      '--batch-size <n>',
      'images per forward pass (default 32, more for small models on ONNX Runtime)',
      count('batch-size', 1, MAX_BATCH),
    )
    .option('--strict', 'stop on the first image that cannot be decoded')
    .option('--allow-partial', 'use the whole members of a tar shard that is cut short (default: refuse it)');
}

/**
 * `--perturbation FILE`. Its old short form `-v` (which users read as verbose or version) still works
 * for a while, hidden from the help, with a warning naming the new flag.
 */
export function addPerturbationFlag(cmd: Command, help: string): Command {
  return cmd.option('--perturbation <file>', help).addOption(new Option('-v <file>', 'old short form of --perturbation').hideHelp());
}

/** The --perturbation path (or the old -v), refusing both at once and, when `required`, neither. */
export function perturbationPath(flags: Record<string, unknown>, required: boolean, warn: (line: string) => void): string | undefined {
  const long = flags.perturbation as string | undefined;
  const old = flags.v as string | undefined;
  if (long !== undefined && old !== undefined)
    throw new UsageError('--perturbation and -v: give the perturbation once, with --perturbation');
  if (old !== undefined) warn(`-v ${old}: -v is the old short form of --perturbation and will go; write --perturbation ${old}`);
  const file = long ?? old;
  if (required && file === undefined) throw new UsageError('--perturbation <file>: required (the perturbation to evaluate, .npy or .npz)');
  return file;
}

/** How a perturbation file from another tool is stored (--layout, --units, --array). */
export function addFormatFlags(cmd: Command): Command {
  return cmd
    .option(
      '--layout <l>',
      'axis order of a perturbation file: hwc (uap, TF), chw or nchw (PyTorch, ART), nhwc; default auto (from the channel axis)',
    )
    .option(
      '--units <u>',
      "scale of its values: pixels ([0, 255] images; uap), unit ([0, 1] images, before Normalize) or normalized (after it: divided by the model's std); default auto (pixels when values exceed 2.5, else asks)",
    )
    .option('--array <name>', 'the array to read from a .npz (default: its only one)');
}

/** The library's PerturbationFormat from --layout / --units / --array. */
export function perturbationFormat(f: Record<string, unknown>): PerturbationFormat {
  const format: PerturbationFormat = {
    layout: f.layout as PerturbationFormat['layout'],
    units: f.units as PerturbationFormat['units'],
    array: f.array as string | undefined,
  };
  checkFormat(format);
  return format;
}

/** The fields every scoring command (evaluate, accuracy) passes to the library. */
export function scoringJob(f: Record<string, unknown>, backend: Backend) {
  return {
    backend,
    model: f.model as string,
    card: cardOverrides(f),
    assets: f.assets as string | undefined,
    data: f.data as string | undefined,
    labels: f.labels as string | undefined,
    limit: f.limit as number | undefined,
    strict: Boolean(f.strict),
    allowPartial: Boolean(f.allowPartial),
    batchSize: f.batchSize as number,
  };
}

export function dataSpec(f: Record<string, unknown>): DataSpec {
  return {
    data: f.data as string | undefined,
    val: f.val as string | undefined,
    labels: f.labels as string | undefined,
    valLabels: f.valLabels as string | undefined,
    limit: f.limit as number | undefined,
    valLimit: f.valLimit as number | undefined,
    sample: f.sample as number | undefined,
    valSample: f.valSample as number | undefined,
    strict: Boolean(f.strict),
    allowPartial: Boolean(f.allowPartial),
  };
}
