import { existsSync } from 'node:fs';
import * as tf from '../../tf.js';
import { localExecutor } from '../../run/executor.js';
import { writeNpy } from '../../io/npy.js';
import { loadPerturbation, OWN_FORMAT } from '../../perturbation/file.js';
import { pct } from '../../report/format.js';
import type { RoundFolder } from './folder.js';
import type { FinetuneRun, RoundModel } from './job.js';

/** Pool member i of round r is crafted from its own seed: distinct members, the same in every run and on every worker. */
const memberSeed = (run: FinetuneRun, r: number, i: number) => run.o.seed + 1000 * r + 1 + i;

/**
 * Every member of round r's pool not yet on disk, crafted on the run's executor (here one by one; a
 * queue's workers all at once, from the model as named on disk) and saved as it is made, atomically:
 * a member file exists only when it is complete, so a stopped run resumes with the members it has.
 */
async function craftMissing(run: FinetuneRun, model: RoundModel, r: number, folder: RoundFolder): Promise<void> {
  const missing = Array.from({ length: run.o.poolSize }, (_, i) => i).filter((i) => !existsSync(folder.member(i)));
  if (!missing.length) return;
  const exec = run.ctl.exec ?? localExecutor;
  if (exec !== localExecutor) run.log.info(`round ${r}: crafting ${missing.length} pool member(s) on ${exec.where}`);
  const place = { model: model.worker, data: run.job.data ?? null, role: 'data' as const, dir: run.xDir, strict: run.job.strict };
  const runs = missing.map((i) => ({ X: run.X, options: { ...run.attack, seed: memberSeed(run, r, i) } }));
  await exec.craft({ model: model.classifier, place }, runs, run.method, {
    signal: run.ctl.signal,
    onRun: (k, m) => {
      writeNpy(folder.member(missing[k]), { data: m.v, shape: model.classifier.inputShape });
      run.log.info(
        `round ${r}: pool member ${missing[k] + 1}/${run.o.poolSize}: fooling rate on X ${pct(m.foolingRate)} (${m.seconds.toFixed(0)} s)`,
      );
    },
  });
}

/**
 * The pool of round r, stacked [P, H, W, C]: universal perturbations of the model the round starts from.
 * Members a previous run saved are read back; the others are crafted first (craftMissing).
 */
export async function roundPool(run: FinetuneRun, model: RoundModel, r: number, folder: RoundFolder): Promise<tf.Tensor4D> {
  await craftMissing(run, model, r, folder);
  const members: tf.Tensor3D[] = [];
  try {
    for (let i = 0; i < run.o.poolSize; i++) members.push(loadPerturbation(folder.member(i), model.classifier, run.log, OWN_FORMAT));
    return tf.stack(members) as tf.Tensor4D;
  } finally {
    tf.dispose(members);
  }
}
