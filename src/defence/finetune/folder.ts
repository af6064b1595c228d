import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJson } from '../../run/write.js';
import type { Log } from '../../log.js';

/**
 * Where a defence run keeps what it writes. In its output folder: config.json, defence.json (the
 * records), defence.md (the table), and one folder per round (round 0: the original model).
 */

/** The records of the finished rounds, rewritten after each: what a resume reads back. */
export const RECORDS_FILE = 'defence.json';
/** The rounds table. */
export const TABLE_FILE = 'defence.md';
/** In a round's model folder: its epoch records, rewritten after each epoch. */
export const TRAINING_LOG = 'training.json';
/** In a round's model folder: the perturbation universal adversarial training keeps beside the weights. */
export const UAT_DELTA = 'uat-perturbation.npy';

/** The paths of round r. */
export interface RoundFolder {
  /** The fresh UAP crafted on the round's model (perturbation.npy and .png). */
  attack: string;
  /** Its perturbation.npy: the next round's "previous round's UAP". */
  perturbation: string;
  /** Pool member i, crafted on the model the round starts from. */
  member(i: number): string;
  /** The fine-tuned model: weights, card.json, training.json (and uat-perturbation.npy). */
  model: string;
  /** The model folder being written, renamed over `model` when complete. */
  nextModel: string;
  /** The fine-tuned model's card. */
  card: string;
}

export function roundFolder(out: string, r: number): RoundFolder {
  const dir = join(out, `round-${r}`);
  const model = join(dir, 'model');
  return {
    attack: join(dir, 'attack'),
    perturbation: join(dir, 'attack', 'perturbation.npy'),
    member: (i) => join(dir, 'pool', `member-${i}.npy`),
    model,
    nextModel: `${model}.next`,
    card: join(model, 'card.json'),
  };
}

/** What a defence run leaves in its folder, besides config.json (which a fresh run rewrites). */
const isRunEntry = (name: string) => /^round-\d+$/.test(name) || [RECORDS_FILE, TABLE_FILE, 'report.html'].includes(name);

/**
 * Readies `out` for a fresh run: another run's rounds, records and report there are removed (a fresh
 * run must not pick up its pools, epochs or models), and this run's configuration is written.
 */
export function startFresh(out: string, config: Record<string, unknown>, log: Log): void {
  const stale = existsSync(out) ? readdirSync(out).filter(isRunEntry) : [];
  if (stale.length) log.warn(`{out} ${out}: replacing the defence run there (${stale.length} entries; {resume} continues it instead)`);
  for (const f of stale) rmSync(join(out, f), { recursive: true, force: true });
  writeJson(join(out, 'config.json'), config);
}
