import type { CardOverrides } from '../import/load.js';
import type { CraftJob, GradJob, ScoreShard, ShardItem } from './shards.js';
import { readLimit } from '../io/bounded.js';
import type { ImageShape } from '../math/imageShape.js';

/**
 * The bounds of every field a queued job carries, checked by the worker before it acts on any of
 * them. A job is signed (signing.ts), so these guard against a coordinator's mistakes and a stolen
 * key's reach as much as against strangers: no field can name a file outside the worker's folders,
 * make it allocate without bound, or run for ever.
 */

/** Most images one scoring or gradient shard may list (a shard is a few batches). */
export const MAX_SHARD_ITEMS = 65_536;
/** Most images of X a crafting job may list (the paper's largest X is 10,000). */
export const MAX_CRAFT_ITEMS = 1_000_000;
/** Most perturbations one scoring shard scores (uap baseline's scaled copies of v; their bytes are bounded too). */
export const MAX_SHARD_PERTURBATIONS = 10_000;
/** Most noise radii and draws per radius (uap baseline's factors, evaluate's draws). */
export const MAX_RADII = 64;
export const MAX_DRAWS = 1000;
/** Bytes of perturbations, or of noise draws, a worker holds at once (count x image). */
export const MAX_NOISE_BYTES = 1024 * 1024 * 1024;
import { MAX_BATCH } from '../attacks/options.js';
/** Image forward passes one scoring shard may ask for: images x (clean + perturbations + radii x draws). */
export const MAX_SHARD_FORWARDS = 20_000_000;
/** Bytes of decoded images a crafting job may hold (its whole X, as uint8). */
export const MAX_CRAFT_BYTES = 8 * 1024 * 1024 * 1024;

/** A field that does not hold what this uap writes: the job is refused, naming it. */
export class JobFieldError extends Error {
  override name = 'JobFieldError';
}

function bad(field: string, expected: string): never {
  throw new JobFieldError(`job field ${field}: expected ${expected}`);
}

export function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(field, `an integer in [${min}, ${max}]`);
  return v;
}

export function finite(v: unknown, field: string, min = -Number.MAX_VALUE, max = Number.MAX_VALUE): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(field, `a finite number in [${min}, ${max}]`);
  return v;
}

export function str(v: unknown, field: string, maxLength: number, pattern?: RegExp): string {
  if (typeof v !== 'string' || v.length > maxLength || v.includes('\0') || (pattern && !pattern.test(v)))
    bad(field, `a string of at most ${maxLength} characters${pattern ? ` matching ${pattern}` : ''}`);
  return v;
}

export function list<T>(v: unknown, field: string, max: number, each: (x: unknown, field: string) => T): T[] {
  if (!Array.isArray(v) || v.length > max) bad(field, `a list of at most ${max} entries`);
  return v.map((x, i) => each(x, `${field}[${i}]`));
}

export function obj(v: unknown, field: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(field, 'an object');
  const o = v as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !allowed.includes(k));
  if (extra !== undefined) bad(`${field}.${extra.slice(0, 40)}`, `none (a job may set only ${allowed.join(', ')})`);
  return o;
}

export const SHA256 = /^[0-9a-f]{64}$/;

/**
 * The card fields a job may set: how pixels map to the input and which output is the logits. Fields
 * that name files (model, labels, outputMap files) or the format are the worker's own: refused.
 */
const CARD_FIELDS = ['inputShape', 'numClasses', 'preprocess', 'logitsLayer', 'outputIsProbabilities', 'outputMap', 'labelSpace'] as const;

/** The card overrides a coordinator sends: the scoring ones (label names change no figure). */
export function jobCard(card: CardOverrides | undefined): CardOverrides | undefined {
  if (!card) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of CARD_FIELDS) if (card[k] !== undefined) out[k] = card[k];
  if (card.outputMap) out.outputMap = card.outputMap.dropFirst !== undefined ? { dropFirst: card.outputMap.dropFirst } : undefined;
  if (out.outputMap === undefined) delete out.outputMap;
  return Object.keys(out).length ? (out as CardOverrides) : undefined;
}

/** A job's card overrides, checked field by field. */
export function checkCard(v: unknown): CardOverrides | undefined {
  if (v === undefined) return undefined;
  const c = obj(v, 'model.card', CARD_FIELDS);
  const out: CardOverrides = {};
  if (c.inputShape !== undefined) {
    const s = list(c.inputShape, 'model.card.inputShape', 3, (x, f) => int(x, f, 1, 4096));
    if (s.length !== 3 || ![1, 3].includes(s[2])) bad('model.card.inputShape', '[height, width, 1 or 3]');
    out.inputShape = s as ImageShape;
  }
  if (c.numClasses !== undefined) out.numClasses = int(c.numClasses, 'model.card.numClasses', 2, 1_000_000);
  if (c.preprocess !== undefined) {
    const p = obj(c.preprocess, 'model.card.preprocess', ['scale', 'offset', 'mean', 'std', 'channelOrder']);
    out.preprocess = {
      ...(p.scale !== undefined ? { scale: finite(p.scale, 'model.card.preprocess.scale') } : {}),
      ...(p.offset !== undefined ? { offset: finite(p.offset, 'model.card.preprocess.offset') } : {}),
      ...(p.mean !== undefined ? { mean: list(p.mean, 'model.card.preprocess.mean', 3, (x, f) => finite(x, f)) } : {}),
      ...(p.std !== undefined ? { std: list(p.std, 'model.card.preprocess.std', 3, (x, f) => finite(x, f)) } : {}),
      ...(p.channelOrder !== undefined
        ? { channelOrder: str(p.channelOrder, 'model.card.preprocess.channelOrder', 3, /^(RGB|BGR)$/) as 'RGB' }
        : {}),
    };
  }
  if (c.logitsLayer !== undefined) out.logitsLayer = str(c.logitsLayer, 'model.card.logitsLayer', 256);
  if (c.outputIsProbabilities !== undefined) {
    if (typeof c.outputIsProbabilities !== 'boolean') bad('model.card.outputIsProbabilities', 'true or false');
    out.outputIsProbabilities = c.outputIsProbabilities;
  }
  if (c.outputMap !== undefined) {
    const m = obj(c.outputMap, 'model.card.outputMap', ['dropFirst']);
    out.outputMap = { dropFirst: int(m.dropFirst, 'model.card.outputMap.dropFirst', 0, 1000) };
  }
  if (c.labelSpace !== undefined) out.labelSpace = str(c.labelSpace, 'model.card.labelSpace', 8, /^(imagenet|own)$/) as 'own';
  return out;
}

/** An image as a shard names it (the worker then keeps it inside its folders, by its real path). */
export function checkItem(v: unknown, field: string): ShardItem {
  const o = obj(v, field, ['path', 'label', 'member']);
  const path = str(o.path, `${field}.path`, 4096);
  const item: ShardItem = { path };
  if (o.label !== undefined) item.label = int(o.label, `${field}.label`, 0, 1_000_000);
  if (o.member !== undefined) {
    const m = obj(o.member, `${field}.member`, ['name', 'offset', 'size']);
    item.member = {
      name: str(m.name, `${field}.member.name`, 4096),
      offset: int(m.offset, `${field}.member.offset`, 0, Number.MAX_SAFE_INTEGER),
      size: int(m.size, `${field}.member.size`, 0, readLimit('image')),
    };
  }
  return item;
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') bad(field, 'true or false');
  return v;
}

const HEADER = ['protocol', 'uap', 'model', 'modelFiles', 'modelPrint', 'data', 'role', 'items', 'dataPrint'] as const;

/** What every job starts with: the protocol, the model, the set and its images. */
function header(o: Record<string, unknown>, maxItems: number): Pick<ScoreShard, (typeof HEADER)[number]> {
  const m = obj(o.model, 'model', ['spec', 'card']);
  return {
    protocol: int(o.protocol, 'protocol', 0, 1_000_000),
    uap: str(o.uap, 'uap', 64),
    model: { spec: str(m.spec, 'model.spec', 4096), ...(m.card !== undefined ? { card: checkCard(m.card) } : {}) },
    ...(o.modelFiles !== undefined ? { modelFiles: str(o.modelFiles, 'modelFiles', 64, SHA256) } : {}),
    modelPrint: str(o.modelPrint, 'modelPrint', 64, SHA256),
    data: o.data === null ? null : str(o.data, 'data', 4096),
    role: str(o.role, 'role', 4, /^(data|val)$/) as 'data' | 'val',
    items: list(o.items, 'items', maxItems, checkItem),
    dataPrint: str(o.dataPrint, 'dataPrint', 64, SHA256),
  };
}

function parse(body: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    bad('(the job)', 'JSON');
  }
  return obj(v, '(the job)', [
    ...HEADER,
    'vs',
    'radii',
    'draws',
    'batchSize',
    'strict',
    'ranks',
    'v',
    'labels',
    'n',
    'loss',
    'method',
    'options',
  ]);
}

/** A scoring shard, every field checked. */
export function parseScoreShard(body: string): ScoreShard {
  const o = parse(body);
  return {
    ...header(o, MAX_SHARD_ITEMS),
    vs: list(o.vs, 'vs', MAX_SHARD_PERTURBATIONS, (x, f) => str(x, f, 64, SHA256)),
    radii: list(o.radii, 'radii', MAX_RADII, (x, f) => {
      const r = obj(x, f, ['norm', 'xi']);
      if (r.norm !== 2 && r.norm !== 'inf') bad(`${f}.norm`, '2 or "inf"');
      return { norm: r.norm, xi: finite(r.xi, `${f}.xi`, 0, 1e9) };
    }),
    draws: int(o.draws, 'draws', 0, MAX_DRAWS),
    batchSize: int(o.batchSize, 'batchSize', 1, MAX_BATCH),
    strict: bool(o.strict, 'strict'),
    ...(o.ranks !== undefined ? { ranks: bool(o.ranks, 'ranks') } : {}),
  };
}

/** A gradient shard of an SGD-UAP step, every field checked. */
export function parseGradJob(body: string): GradJob {
  const o = parse(body);
  const h = header(o, MAX_SHARD_ITEMS);
  const labels = list(o.labels, 'labels', MAX_SHARD_ITEMS, (x, f) => int(x, f, 0, 1_000_000));
  if (labels.length !== h.items.length) bad('labels', `one label per image (${h.items.length})`);
  const l = obj(o.loss, 'loss', ['loss', 'beta', 'kappa', 'target', 'classes']);
  return {
    ...h,
    v: str(o.v, 'v', 64, SHA256),
    labels,
    n: int(o.n, 'n', 1, MAX_CRAFT_ITEMS),
    loss: {
      loss: str(l.loss, 'loss.loss', 8, /^(ce|margin)$/) as 'ce',
      beta: finite(l.beta, 'loss.beta'),
      kappa: finite(l.kappa, 'loss.kappa'),
      ...(l.target !== undefined ? { target: int(l.target, 'loss.target', 0, 1_000_000) } : {}),
      ...(l.classes !== undefined ? { classes: list(l.classes, 'loss.classes', 1_000_000, (x, f) => int(x, f, 0, 1_000_000)) } : {}),
    },
  };
}

/** A whole crafting run; its options are checked by the method itself on the worker (methodOptions). */
export function parseCraftJob(body: string, methods: readonly string[]): CraftJob {
  const o = parse(body);
  return {
    ...header(o, MAX_CRAFT_ITEMS),
    strict: bool(o.strict, 'strict'),
    method: str(o.method, 'method', 64, new RegExp(`^(${methods.join('|')})$`)) as CraftJob['method'],
    options: obj(o.options, 'options', Object.keys(o.options ?? {})) as unknown as CraftJob['options'],
  };
}
