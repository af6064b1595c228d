import { existsSync, renameSync, rmSync } from 'node:fs';
import { saveTrainable, type Trainable } from '../trainable.js';
import type { Adversary } from './adversary.js';
import type { RoundFolder } from './folder.js';
import { writeTrainingLog, type EpochRecord } from './records.js';

/**
 * A round's model folder holds one consistent epoch at any moment: each save writes a new folder
 * beside it and swaps it in (remove, rename).
 */

/** A kill between removing the old model folder and renaming the new one leaves only the new one: it is the round's model. */
export function recoverModelFolder(f: RoundFolder): void {
  if (existsSync(f.nextModel) && !existsSync(f.model)) renameSync(f.nextModel, f.model);
}

/** Saves the model after an epoch: weights and card (with `provenance`), the adversary's state and the epoch log, swapped in whole. */
export async function saveRoundModel(
  f: RoundFolder,
  t: Trainable,
  adversary: Adversary,
  epochs: EpochRecord[],
  assets: string,
  provenance: Record<string, unknown>,
): Promise<void> {
  rmSync(f.nextModel, { recursive: true, force: true });
  await saveTrainable(t, f.nextModel, assets, provenance);
  await adversary.save(f.nextModel);
  writeTrainingLog(f.nextModel, epochs);
  rmSync(f.model, { recursive: true, force: true });
  renameSync(f.nextModel, f.model);
}
