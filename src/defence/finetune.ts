import { assetsDir } from '../paths.js';
import { namedLog } from '../log.js';
import { checkDataSpec } from '../data/sets.js';
import { finetuneOptions } from './finetune/options.js';
import {
  refuseJob,
  openRun,
  trainingTargets,
  originalModel,
  finetunedModel,
  type DefenceJob,
  type FinetuneControl,
  type FinetuneRun,
  type RoundModel,
} from './finetune/job.js';
import { roundFolder, startFresh } from './finetune/folder.js';
import { resumedRounds, writeRecords, type DefenceResult, type EpochRecord, type RoundRecord } from './finetune/records.js';
import { recoverModelFolder } from './finetune/modelFolder.js';
import { roundPool } from './finetune/pool.js';
import { poolAdversary, savedUatDelta, uatAdversary } from './finetune/adversary.js';
import { trainRound } from './finetune/training.js';
import { measureRound } from './finetune/measure.js';

/**
 * The paper's defence (section 5): fine-tune the network on images perturbed by a pool of
 * precomputed universal perturbations, then attack it afresh; repeat for several rounds. The stages
 * live in ./finetune/: the options, the job, the run folder and its records, the pool, the
 * adversary a round trains against, the training with its back-off, and the re-attack.
 */

export { FINETUNE_DEFAULTS, type FinetuneOptions } from './finetune/options.js';
export type { DefenceJob, FinetuneControl } from './finetune/job.js';
export { defenceMarkdown, type DefenceResult, type EpochRecord, type RoundRecord } from './finetune/records.js';

/**
 * Round r's training, from the model the round starts from: its model folder made whole after a kill,
 * its adversary (the pool crafted, or UAT's perturbation), then the epochs.
 */
async function hardenRound(
  run: FinetuneRun,
  current: RoundModel,
  r: number,
  targets: Int32Array,
  baseline: number,
): Promise<EpochRecord[]> {
  const folder = roundFolder(run.job.out, r);
  recoverModelFolder(folder);
  const adversary =
    run.o.defence === 'uat'
      ? uatAdversary(run, targets, savedUatDelta(folder.model, current.classifier, run.log))
      : poolAdversary(run, targets, await roundPool(run, current, r, folder));
  try {
    return await trainRound(run, r, adversary, current.card, folder, baseline);
  } finally {
    adversary.dispose();
  }
}

/**
 * The defence: measure the original model (clean accuracy, a fresh UAP's fooling rate), then per
 * round: craft the pool on the current model, fine-tune it, save it (TF.js model + card), attack it
 * afresh. Every stage is written as it completes; a resume skips what is done (training restarts
 * from the last saved epoch, with fresh optimiser moments).
 */
export async function runFinetune(job: DefenceJob, ctl: FinetuneControl = {}): Promise<DefenceResult> {
  const basis = { job, ctl, o: finetuneOptions(job.options), log: namedLog(ctl.log), assets: assetsDir(job.assets) };
  checkDataSpec(job);
  const originalCard = refuseJob(job, basis.assets);
  let current = await originalModel(basis, originalCard);
  try {
    const run = await openRun(basis, current.classifier, originalCard);
    if (!job.resume) startFresh(job.out, run.config, run.log);
    const rounds = job.resume ? resumedRounds(job.out, run.config) : [];
    const result: DefenceResult = { config: run.config, rounds, out: job.out };
    const record = (row: RoundRecord) => {
      rounds.push(row);
      writeRecords(result);
    };
    const targets = await trainingTargets(run, current.classifier);
    if (!rounds.length) record(await measureRound(run, current.classifier, 0, job.model, [], Date.now()));
    const baseline = rounds[0].cleanAccuracy;
    if (rounds.length > 1) {
      current.classifier.dispose();
      current = await finetunedModel(run, rounds[rounds.length - 1].card);
    }
    for (let r = rounds.length; r <= run.o.rounds; r++) {
      const started = Date.now();
      const epochs = await hardenRound(run, current, r, targets, baseline);
      const card = roundFolder(job.out, r).card;
      current.classifier.dispose();
      current = await finetunedModel(run, card);
      record(await measureRound(run, current.classifier, r, card, epochs, started));
    }
    return result;
  } finally {
    current.classifier.dispose();
  }
}
