import { join } from 'node:path';
import type { CardOverrides } from '../import/load.js';
import type { Norm } from '../math/lp.js';
import { readBoundedText } from '../io/bounded.js';
import { UsageError } from '../errors.js';

/**
 * What the commands that continue a `uap compute` run (resume, transfer, graph, baseline) read back
 * from its config.json, each field checked: one reader instead of one per command. A field of the
 * wrong type reads as absent; a damaged `modelCard` (it would load another model) is refused.
 */
export interface RunConfig {
  /** The model as it was named (`loadModel`'s spec: a bundled name or a path). */
  modelSpec?: string;
  /** The loaded model's name. */
  model?: string;
  /** Card fields given as flags, to load the model the same way. */
  modelCard?: CardOverrides;
  norm?: Norm;
  seed?: number;
  /** Images of X listed before decoding (a resume with another listing is refused). */
  listed?: number;
  /** The validation images: folder, labels file, and how they were chosen. */
  val?: string;
  valLabels?: string;
  valLimit?: number;
  valSample?: number;
}

const text = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 4096 ? v : undefined);
const whole = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined);

/** The run folder's config.json, checked; undefined when there is none or it is not JSON. */
export function readRunConfig(dir: string): RunConfig | undefined {
  let c: Record<string, unknown>;
  try {
    const parsed = JSON.parse(readBoundedText(join(dir, 'config.json'), { what: 'run' })) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    c = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const card = c.modelCard;
  if (card !== undefined && (typeof card !== 'object' || card === null || Array.isArray(card)))
    throw new UsageError(`${dir}: config.json's "modelCard" is not an object of card fields (a damaged run folder?)`);
  return {
    modelSpec: text(c.modelSpec),
    model: text(c.model),
    modelCard: card as CardOverrides | undefined,
    norm: c.norm === 2 || c.norm === 'inf' ? c.norm : undefined,
    seed: typeof c.seed === 'number' && Number.isSafeInteger(c.seed) && c.seed >= 0 ? c.seed : undefined,
    listed: whole(c.listed),
    val: text(c.val),
    valLabels: text(c.valLabels),
    valLimit: whole(c.valLimit),
    valSample: whole(c.valSample),
  };
}
