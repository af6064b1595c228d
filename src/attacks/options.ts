import { UsageError } from '../errors.js';
import { INNER_ATTACKS } from './innerStep.js';
import { parseNorm } from '../math/lp.js';

/**
 * Every crafting option in one declarative schema: its type and range, its default, its help, which
 * part reads it (the pass runner or a method) and how it enters a resume fingerprint. The option
 * types of the methods, their defaults, their checks (with `{option}` templates the CLI shows as
 * flags), the CLI's flags and the fingerprints are all generated from it: adding an option is one
 * entry here, and the method that reads it.
 */

/** Who reads an option: the pass runner (every method) or one method of the registry. */
export type OptionUser = 'passes' | 'algorithm1' | 'sgd' | 'gduap';
/** The crafting methods, as the schema names them (the registry in methods.ts holds the same names). */
export type MethodName = Exclude<OptionUser, 'passes'>;

interface Common {
  /** Which parts read it. */
  readonly users: readonly OptionUser[];
  /** One line for `--help`, without the users (prepended) or the default (appended). */
  readonly help: string;
  /** The CLI's value placeholder (`<n>`), and a short flag where it has one. */
  readonly arg: string;
  readonly short?: string;
  /**
   * How it enters the resume fingerprint: the value as given or defaulted (true), not at all (false),
   * or as a function of the value and all options (undefined leaves it out), so that checkpoints made
   * before the schema keep their fingerprints.
   */
  readonly fingerprint: boolean | ((value: never, o: Record<string, unknown>) => unknown);
  /** Always there once the run starts, though the schema has no default for it (xi: it depends on the model's input size). */
  readonly required?: true;
  /** Shown after the help where the default is computed, not a value ("xi / 10"). */
  readonly defaultNote?: string;
  /** More than `--help` has room for, for docs/cli.md's table (Markdown); the help line where absent. */
  readonly doc?: string;
}

interface NumberSpec extends Common {
  readonly kind: 'number' | 'integer';
  /** Inclusive bounds, and exclusive ones (`above` 0: positive). */
  readonly min?: number;
  readonly max?: number;
  readonly above?: number;
  readonly below?: number;
  readonly default?: number;
  readonly defaultFor?: Partial<Record<MethodName, number>>;
}

interface ChoiceSpec<C extends string | number = string | number> extends Common {
  readonly kind: 'choice';
  readonly choices: readonly C[];
  /** A CLI word to a choice (`l2` to 2); without it the word itself must be a choice. */
  readonly parse?: (word: string) => C | undefined;
  readonly default?: C;
  readonly defaultFor?: Partial<Record<MethodName, C>>;
}

interface ListSpec extends Common {
  readonly kind: 'list';
  readonly default?: undefined;
  readonly defaultFor?: undefined;
}

export type OptionSpec = NumberSpec | ChoiceSpec | ListSpec;

/** Largest batch of images per pass (a larger one is refused by the engines' memory long before it helps). */
export const MAX_BATCH = 4096;
/** Bound of the step and pass counts: far beyond any useful run, so no run (or queue job) goes on without end. */
const MAX_COUNT = 100_000;

const differs = (o: Record<string, unknown>) => o.inner !== undefined && o.inner !== 'deepfool';

/** The schema, in the order of `--help`. */
export const OPTIONS = {
  norm: {
    kind: 'choice',
    choices: [2, 'inf'],
    parse: parseNorm,
    default: 'inf',
    users: ['passes'],
    arg: '<p>',
    short: '-p',
    help: 'perturbation norm: 2 or inf',
    fingerprint: true,
  } satisfies ChoiceSpec<2 | 'inf'>,
  xi: {
    kind: 'number',
    above: 0,
    users: ['passes'],
    required: true,
    arg: '<x>',
    help: 'radius of the norm ball in pixel units [0,255] (at most the whole pixel range)',
    defaultNote: '10 for inf, 40 on the embedded fashion model; 2000 for L2 at 224x224x3, scaled by sqrt(pixels)',
    fingerprint: true,
  } satisfies NumberSpec,
  delta: {
    kind: 'number',
    min: 0,
    below: 1,
    default: 0.2,
    users: ['passes'],
    arg: '<d>',
    help: 'stop when the fooling rate on X reaches 1 - delta',
    fingerprint: false,
  } satisfies NumberSpec,
  maxPasses: {
    kind: 'integer',
    min: 1,
    max: MAX_COUNT,
    default: 10,
    users: ['passes'],
    arg: '<n>',
    help: 'pass cap over X',
    doc: 'pass cap over X (the run says which of the two stopped it)',
    fingerprint: false,
  } satisfies NumberSpec,
  overshoot: {
    kind: 'number',
    min: 0,
    default: 0.02,
    users: ['algorithm1'],
    arg: '<o>',
    help: 'DeepFool overshoot',
    fingerprint: true,
  } satisfies NumberSpec,
  candidates: {
    kind: 'integer',
    min: 2,
    max: MAX_COUNT,
    default: 10,
    users: ['algorithm1'],
    arg: '<k>',
    help: 'DeepFool candidate classes (top-k of the clean prediction)',
    fingerprint: true,
  } satisfies NumberSpec,
  deepfoolSteps: {
    kind: 'integer',
    min: 1,
    max: MAX_COUNT,
    // The reference UAP code caps DeepFool at 10 steps inside Algorithm 1 and drops unconverged steps;
    // images that have not crossed by then rarely do, and they would cost 5x the gradients at 50.
    default: 10,
    users: ['algorithm1'],
    arg: '<n>',
    help: 'DeepFool step cap inside Algorithm 1 (the reference code uses 10)',
    doc: "DeepFool step cap inside Algorithm 1 (the reference code's; `deepfool()` alone defaults to 50)",
    fingerprint: true,
  } satisfies NumberSpec,
  deepfoolNorm: {
    kind: 'choice',
    choices: [2, 'match'],
    parse: (s: string) => (s === '2' || s === 'l2' ? 2 : s === 'match' ? 'match' : undefined),
    default: 2,
    users: ['algorithm1'],
    arg: '<n>',
    help: "inner DeepFool step: 2 (the paper's code, whatever the ball) or match (the Lp step of --norm: sign steps for Linf)",
    fingerprint: true,
  } satisfies ChoiceSpec<2 | 'match'>,
  inner: {
    kind: 'choice',
    choices: INNER_ATTACKS,
    users: ['algorithm1'],
    arg: '<attack>',
    defaultNote: 'deepfool',
    help: "the attack that moves each image across: deepfool (the paper), fgsm or pgd (gradient-sign steps on the cross-entropy), newtonfool or cw (Carlini-Wagner L2), as ART's UniversalPerturbation offers",
    doc: "the attack that moves each image across, as ART's `UniversalPerturbation(attacker=...)` offers: `deepfool` (the paper); `fgsm` or `pgd` (gradient-sign steps up the cross-entropy, Linf or L2 by `--norm`, inside a ball of `--inner-eps`, default xi; PGD: `--inner-steps` 10 of `--inner-step-size` 2.5 eps / steps); `newtonfool` (Newton steps on the label's probability, `--inner-step-size` is its eta, 0.01; untargeted); `cw` (Carlini-Wagner L2: Adam in tanh space, 5 rounds of binary search on its constant, `--inner-steps` 10 iterations each). All batched, all keep x + r in [0, 255]",
    // Only when not DeepFool: checkpoints of DeepFool runs keep the fingerprint they had before inner attacks existed.
    fingerprint: (v: string | undefined, o) => (differs(o) ? v : undefined),
  } satisfies ChoiceSpec,
  innerEps: {
    kind: 'number',
    above: 0,
    users: ['algorithm1'],
    arg: '<e>',
    help: "with fgsm / pgd: radius of the inner attack in the ball's norm",
    defaultNote: 'xi',
    fingerprint: (v: number | undefined, o) => (differs(o) ? (v ?? o.xi) : undefined),
  } satisfies NumberSpec,
  innerSteps: {
    kind: 'integer',
    min: 1,
    max: MAX_COUNT,
    users: ['algorithm1'],
    arg: '<n>',
    help: 'with pgd: steps (default 10); newtonfool: steps (100); cw: Adam iterations per constant (10)',
    fingerprint: (v: number | undefined, o) => (differs(o) ? (v ?? 10) : undefined),
  } satisfies NumberSpec,
  innerStepSize: {
    kind: 'number',
    above: 0,
    users: ['algorithm1'],
    arg: '<s>',
    help: 'with pgd: step length (default 2.5 x eps / steps); newtonfool: eta (0.01)',
    fingerprint: (v: number | undefined, o) => (differs(o) ? (v ?? null) : undefined),
  } satisfies NumberSpec,
  projection: {
    kind: 'choice',
    choices: ['sum', 'each'],
    // The 'accumulated' variant (ALGORITHM1_VARIANTS in universal.ts) is the default.
    default: 'sum',
    users: ['algorithm1'],
    arg: '<p>',
    help: 'sum (v = P(sum of steps): dual averaging) or each (v = P(v + step) after every image, the paper); overrides --variant',
    fingerprint: true,
  } satisfies ChoiceSpec<'sum' | 'each'>,
  steps: {
    kind: 'choice',
    choices: ['unit', 'minimal'],
    default: 'unit',
    users: ['algorithm1'],
    arg: '<s>',
    help: "unit (each step's direction, --step-size x the ball's L2 radius long) or minimal (DeepFool's step x --step-size, the paper); overrides --variant",
    fingerprint: true,
  } satisfies ChoiceSpec<'unit' | 'minimal'>,
  stepSize: {
    kind: 'number',
    above: 0,
    default: 0.5,
    users: ['algorithm1'],
    arg: '<s>',
    help: "step length (unit: fraction of the ball's L2 radius, 0.5 by default; minimal: multiplier, 1 by default)",
    fingerprint: true,
  } satisfies NumberSpec,
  batchSize: {
    kind: 'integer',
    min: 1,
    max: MAX_BATCH,
    default: 16,
    defaultFor: { sgd: 32 },
    users: ['passes'],
    arg: '<n>',
    help: 'images per batch: forward check and batched DeepFool call, or SGD minibatch',
    doc: 'Algorithm 1: images per forward check and batched DeepFool call; SGD: minibatch. On an X smaller than the minibatch SGD-UAP takes one step a pass, its step starting at xi/10 and shrinking by `--lr-decay` (0.9) a pass: 5 passes cover at most 41% of xi, 22 passes 90%; raise `--max-passes` or lower `--batch-size`',
    fingerprint: true,
  } satisfies NumberSpec,
  seed: {
    kind: 'integer',
    min: 0,
    default: 0,
    users: ['passes'],
    arg: '<n>',
    help: 'seed of the shuffles',
    doc: 'seed of the per-pass shuffles (same seed, same `v`)',
    fingerprint: true,
  } satisfies NumberSpec,
  loss: {
    kind: 'choice',
    choices: ['ce', 'margin'],
    default: 'ce',
    users: ['sgd'],
    arg: '<l>',
    help: 'ce (cross-entropy clamped at --beta) or margin (logit margin bounded at --kappa)',
    doc: "`ce` = mean(min(cross-entropy, beta)), or `margin` = C&W logit margin bounded at -kappa (with `--optimizer adam`, Zhang et al.'s bounded-logit loss, CVPR 2020; a large `--beta` gives their negative cross-entropy)",
    fingerprint: true,
  } satisfies ChoiceSpec<'ce' | 'margin'>,
  beta: {
    kind: 'number',
    above: 0,
    default: 12,
    users: ['sgd'],
    arg: '<b>',
    help: 'clamp of the cross-entropy',
    fingerprint: true,
  } satisfies NumberSpec,
  kappa: {
    kind: 'number',
    min: 0,
    default: 0,
    users: ['sgd'],
    arg: '<k>',
    help: 'confidence of the margin loss',
    fingerprint: true,
  } satisfies NumberSpec,
  optimizer: {
    kind: 'choice',
    choices: ['sign', 'adam'],
    default: 'sign',
    defaultFor: { gduap: 'adam' },
    users: ['sgd', 'gduap'],
    arg: '<o>',
    help: 'sign (sign steps for Linf, normalised gradient for L2) or adam',
    doc: "`sign` (sign of the gradient for Linf, its direction for L2) or `adam`; every step is rescaled to length `--lr` in the ball's norm",
    fingerprint: true,
  } satisfies ChoiceSpec<'sign' | 'adam'>,
  lr: {
    kind: 'number',
    above: 0,
    users: ['sgd', 'gduap'],
    arg: '<s>',
    help: "first step length in the ball's norm, pixels",
    defaultNote: 'xi/10',
    fingerprint: (v: number | undefined, o) => v ?? (o.xi as number) / 10,
  } satisfies NumberSpec,
  lrDecay: {
    kind: 'number',
    above: 0,
    max: 1,
    default: 0.9,
    users: ['sgd', 'gduap'],
    arg: '<f>',
    help: 'step length factor per pass',
    fingerprint: true,
  } satisfies NumberSpec,
  gradShard: {
    kind: 'integer',
    min: 1,
    max: MAX_BATCH,
    users: ['sgd'],
    arg: '<n>',
    help: 'images per gradient shard of a step; with --queue each shard runs on a worker, and a local run with the same value gives the same v',
    defaultNote: 'the whole minibatch',
    // gradShard shapes the float sums, so a resume with another value is refused (as any setting).
    fingerprint: (v: number | undefined, o) => (v !== undefined && v !== o.batchSize ? v : undefined),
  } satisfies NumberSpec,
  prior: {
    kind: 'choice',
    choices: ['none', 'range', 'data'],
    default: 'none',
    users: ['gduap'],
    arg: '<p>',
    help: 'what v is added to: none (no data: the network sees v alone), range (random noise over [0, 255]) or data (images of X)',
    doc: "what `v` is added to: `none` (no data at all: the image the network sees as zero input, so it sees `v` alone, as Fast Feature Fool), `range` (random noise over [0, 255], fresh each step: GD-UAP's range prior) or `data` (images of X: its data prior). With `none` and `range`, X is only scored, never used to craft",
    fingerprint: true,
  } satisfies ChoiceSpec<'none' | 'range' | 'data'>,
  stepsPerPass: {
    kind: 'integer',
    min: 1,
    max: MAX_COUNT,
    default: 32,
    users: ['gduap'],
    arg: '<n>',
    help: 'ascent steps on v per pass',
    fingerprint: true,
  } satisfies NumberSpec,
  layers: {
    kind: 'list',
    users: ['gduap'],
    arg: '<names>',
    help: 'comma-separated layers whose activations v maximises (one layer with --prior data: layer maximisation)',
    doc: "the layers whose activation norms it maximises (node names, comma-separated; each convolution's output after the batch-norm and activation that follow it). One layer with `--prior data` is layer maximisation (a feature-layer loss)",
    defaultNote: 'every convolution',
    // The method records the layers it resolved (the default is the model's convolutions).
    fingerprint: false,
  } satisfies ListSpec,
} as const;

export type OptionName = keyof typeof OPTIONS;
export const OPTION_NAMES = Object.keys(OPTIONS) as OptionName[];
type Schema = typeof OPTIONS;

type ValueOf<S> = S extends { kind: 'choice'; choices: readonly (infer C)[] } ? C : S extends { kind: 'list' } ? string[] : number;
type UsedBy<K extends OptionName, U extends OptionUser> = U extends Schema[K]['users'][number] ? K : never;
type AlwaysThere<K extends OptionName> = Schema[K] extends { default: unknown } | { required: true } ? K : never;

/**
 * The options one part reads, as its code sees them once defaults are filled: an option with a
 * default (or `required`) is always there, one without (computed at run time, or absent) is optional.
 */
export type OptionsOf<U extends OptionUser> = {
  -readonly [K in OptionName as UsedBy<K, U> & AlwaysThere<K>]: ValueOf<Schema[K]>;
} & {
  -readonly [K in OptionName as Exclude<UsedBy<K, U>, AlwaysThere<K>>]?: ValueOf<Schema[K]>;
};

/** Every option of the schema, each optional: what a caller gives. */
export type GivenOptions = { -readonly [K in OptionName]?: ValueOf<Schema[K]> };

const spec = (name: OptionName): OptionSpec => OPTIONS[name] as OptionSpec;
/** "sgd, gduap: " before the help of a method's own option; nothing for the pass runner's. */
const usersPrefix = (s: OptionSpec) => (s.users.includes('passes') ? '' : `${s.users.join(', ')}: `);
const reads = (name: OptionName, users: readonly OptionUser[]) => spec(name).users.some((u) => users.includes(u));

/** The defaults of the options `method` and the pass runner read (xi excepted). */
export function defaultsOf(method: MethodName): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of OPTION_NAMES) {
    const s = spec(name);
    if (!reads(name, ['passes', method])) continue;
    const d = (s.defaultFor as Record<string, unknown> | undefined)?.[method] ?? s.default;
    if (d !== undefined) out[name] = d;
  }
  return out;
}

/** What an option takes, in words ("an integer in [1, 4096]", "sum or each"). */
export function expected(name: OptionName): string {
  const s = spec(name);
  if (s.kind === 'list') return 'comma-separated names';
  if (s.kind === 'choice') {
    const c = s.choices.map(String);
    return c.length === 2 ? `${c[0]} or ${c[1]}` : `one of ${c.join(', ')}`;
  }
  const what = s.kind === 'integer' ? 'an integer' : 'a number';
  const lo = s.min !== undefined ? `[${s.min}` : s.above !== undefined ? `(${s.above}` : undefined;
  const hi = s.max !== undefined ? `${s.max}]` : s.below !== undefined ? `${s.below})` : undefined;
  if (lo && hi) return `${what} in ${lo}, ${hi}`;
  if (s.above === 0 && !hi) return s.kind === 'integer' ? 'a positive integer' : 'a positive number';
  if (s.min !== undefined) return `${what} >= ${s.min}`;
  if (s.above !== undefined) return `${what} > ${s.above}`;
  return what;
}

/** Whether a value is one the option takes. */
export function accepts(name: OptionName, value: unknown): boolean {
  const s = spec(name);
  if (s.kind === 'list') return Array.isArray(value) && value.every((x) => typeof x === 'string' && x.length > 0);
  if (s.kind === 'choice') return (s.choices as readonly unknown[]).includes(value);
  if (typeof value !== 'number' || !Number.isFinite(value)) return false;
  if (s.kind === 'integer' && !Number.isSafeInteger(value)) return false;
  return (
    (s.min === undefined || value >= s.min) &&
    (s.max === undefined || value <= s.max) &&
    (s.above === undefined || value > s.above) &&
    (s.below === undefined || value < s.below)
  );
}

/**
 * Checks the options `users` read that are present (a required one missing is refused too): one
 * UsageError naming the first bad one as `{option}`, what it takes and what it got.
 */
export function checkOptions(o: object, users: readonly OptionUser[]): void {
  const given = o as Record<string, unknown>;
  for (const name of OPTION_NAMES) {
    if (!reads(name, users)) continue;
    const value = given[name];
    const required = spec(name).default !== undefined || spec(name).required === true;
    if (value === undefined && !required) continue;
    if (!accepts(name, value))
      throw new UsageError(`{${name}}: expected ${expected(name)}, got ${Array.isArray(value) ? value.join(',') : String(value)}`);
  }
}

/** A form control of one option: bounds, step, choices, default, and the help line as its title. */
export interface FormControl {
  title: string;
  min?: number;
  max?: number;
  step?: number | 'any';
  choices?: readonly (string | number)[];
  default?: string | number;
}

/**
 * What a form control of the option shows (the studio's): for a number, its inclusive bounds (an
 * exclusive bound of an integer becomes the next whole number; of a real, the browser has no exclusive
 * bound, so it stays unset and the check on start names it), its step and default; for a choice, its
 * choices; the help line as the title.
 */
export function formControl(name: OptionName): FormControl {
  const s = spec(name);
  const title = usersPrefix(s) + s.help;
  if (s.kind === 'choice') return { title, choices: s.choices, default: s.default };
  if (s.kind === 'list') return { title };
  const whole = s.kind === 'integer';
  const min = s.min ?? (s.above !== undefined && whole ? Math.floor(s.above) + 1 : undefined);
  const max = s.max ?? (s.below !== undefined && whole ? Math.ceil(s.below) - 1 : undefined);
  return { title, min, max, step: whole ? 1 : 'any', default: s.default };
}

/** The options `users` read as they enter a resume fingerprint (see `OptionSpec.fingerprint`). */
export function fingerprintOf(o: object, users: readonly OptionUser[]): Record<string, unknown> {
  const given = o as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const name of OPTION_NAMES) {
    const f = spec(name).fingerprint;
    if (!reads(name, users) || f === false) continue;
    const value = f === true ? given[name] : f(given[name] as never, given);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** A CLI word as the option's value, or a UsageError naming the flag (`--max-passes 0: expected ...`). */
export function parseWord(name: OptionName, word: string): unknown {
  const s = spec(name);
  const flag = `--${flagName(name)}`;
  const value =
    s.kind === 'list'
      ? word
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean)
      : s.kind === 'choice'
        ? s.parse
          ? s.parse(word)
          : word
        : word.trim() === ''
          ? NaN
          : Number(word);
  if (!accepts(name, value)) throw new UsageError(`${flag} ${word}: expected ${expected(name)}`);
  return value;
}

/** `maxPasses` -> `max-passes`. */
export const flagName = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The option's help line: who reads it, what it does, its default (per method where they differ; none where a command gives its own, which the CLI shows). */
export function helpLine(name: OptionName, given?: unknown): string {
  const s = spec(name);
  const per = s.defaultFor
    ? Object.entries(s.defaultFor)
        .map(([m, d]) => `${m}: ${String(d)}`)
        .join(', ')
    : '';
  const d =
    given !== undefined
      ? ''
      : s.default !== undefined
        ? ` (default: ${String(s.default)}${per ? `; ${per}` : ''})`
        : s.defaultNote !== undefined
          ? ` (default: ${s.defaultNote})`
          : '';
  return `${usersPrefix(s)}${s.help}${d}`;
}

/** One row of docs/cli.md's option table: the flag, its default, who reads it and what it does. */
export function docRow(name: OptionName): string {
  const s = spec(name);
  const flag = `${s.short ? `\`${s.short}\`, ` : ''}\`--${flagName(name)}\``;
  const per = Object.entries(s.defaultFor ?? {}).map(([m, d]) => `${String(d)} (${m})`);
  const d = s.default !== undefined ? [String(s.default), ...per].join(', ') : (s.defaultNote ?? '');
  return `| ${flag} | ${d} | ${usersPrefix(s)}${(s.doc ?? s.help).replace(/\|/g, '\\|')} |`;
}
