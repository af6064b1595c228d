import { existsSync } from 'node:fs';
import * as tf from '../../tf.js';
import { craft } from '../../attacks/methods.js';
import { writeNpy } from '../../io/npy.js';
import { loadPerturbation, OWN_FORMAT } from '../../perturbation/file.js';
import { pct } from '../../report/format.js';
import type { RoundFolder } from './folder.js';
import type { FinetuneRun, RoundModel } from './job.js';

/** Pool member i of round r is crafted from its own seed: distinct members, the same in every run and on every worker. */
const memberSeed = (run: FinetuneRun, r: number, i: number) => run.o.seed + 1000 * r + 1 + i;

/**
 * With a RemoteCraft: every member not yet on disk, crafted on the workers at once from the model as
 * named on disk (they load the same file), and saved.
 */
async function craftMissingRemotely(run: FinetuneRun, model: RoundModel, r: number, folder: RoundFolder): Promise<void> {
  const remote = run.ctl.remoteCraft;
  const missing = Array.from({ length: run.o.poolSize }, (_, i) => i).filter((i) => !existsSync(folder.member(i)));
  if (!remote || !missing.length) return;
  run.log.info(`round ${r}: crafting ${missing.length} pool member(s) on the queue's workers`);
  const runs = missing.map((i) => ({ X: run.X, options: { ...run.attack, seed: memberSeed(run, r, i) } }));
  const made = await remote({
    model: model.classifier,
    spec: model.worker,
    data: run.job.data ?? null,
    folder: run.xDir,
    strict: run.job.strict,
    runs,
    method: run.method,
  });
  made.forEach((m, k) => writeNpy(folder.member(missing[k]), { data: m.v, shape: model.classifier.inputShape }));
}

/** Pool member i crafted here, and saved (atomically: a member file exists only when it is complete). */
async function craftMember(run: FinetuneRun, model: RoundModel, r: number, i: number, folder: RoundFolder): Promise<tf.Tensor3D> {
  const started = Date.now();
  const res = await craft(model.classifier, run.X, run.method, { ...run.attack, seed: memberSeed(run, r, i) }, { signal: run.ctl.signal });
  writeNpy(folder.member(i), { data: (await res.v.data()) as Float32Array, shape: res.v.shape });
  run.log.info(
    `round ${r}: pool member ${i + 1}/${run.o.poolSize}: fooling rate on X ${pct(res.history.at(-1)?.foolingRate ?? 0)} (${((Date.now() - started) / 1000).toFixed(0)} s)`,
  );
  return res.v;
}

/**
 * The pool of round r, stacked [P, H, W, C]: universal perturbations of the model the round starts from.
 * Members a previous run saved are read back; the others are crafted on the workers all at once when
 * the caller gave a RemoteCraft, else here one by one, each saved as it is made.
 */
export async function roundPool(run: FinetuneRun, model: RoundModel, r: number, folder: RoundFolder): Promise<tf.Tensor4D> {
  await craftMissingRemotely(run, model, r, folder);
  const members: tf.Tensor3D[] = [];
  try {
    for (let i = 0; i < run.o.poolSize; i++) {
      const file = folder.member(i);
      members.push(
        existsSync(file) ? loadPerturbation(file, model.classifier, run.log, OWN_FORMAT) : await craftMember(run, model, r, i, folder),
      );
    }
    return tf.stack(members) as tf.Tensor4D;
  } finally {
    tf.dispose(members);
  }
}
