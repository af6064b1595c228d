import type { Classifier } from '../../classifier/classifier.js';
import { evaluatePerturbation } from '../../evaluation/scoring.js';
import { craft } from '../../attacks/methods.js';
import { writePerturbation } from '../../run/write.js';
import { loadPerturbation, OWN_FORMAT } from '../../perturbation/file.js';
import { methodName, pct } from '../../report/format.js';
import { roundFolder } from './folder.js';
import type { FinetuneRun } from './job.js';
import type { EpochRecord, RoundRecord } from './records.js';

/** How the previous round's UAP fares on round r's model (does the old attack still work?), against the clean labels `cleanPred` of V. */
async function previousFoolingRate(run: FinetuneRun, model: Classifier, r: number, cleanPred: Int32Array): Promise<number> {
  const v = loadPerturbation(roundFolder(run.job.out, r - 1).perturbation, model, run.log, OWN_FORMAT);
  try {
    return (await evaluatePerturbation(model, run.V, v, { cleanPred })).foolingRate;
  } finally {
    v.dispose();
  }
}

/**
 * Attacks the model round r ends with (round 0: the original) afresh: a UAP crafted on it (the same
 * seed every round), its fooling rate on V and X, clean accuracy, and the previous round's UAP on it.
 * The UAP goes to the round's attack folder, for the next round to try. The round's record.
 */
export async function measureRound(
  run: FinetuneRun,
  model: Classifier,
  r: number,
  card: string,
  epochs: EpochRecord[],
  started: number,
): Promise<RoundRecord> {
  const { method, attack, log } = run;
  log.info(
    `round ${r}: attacking ${r === 0 ? 'the original model' : 'the fine-tuned model'} (${methodName({ method, inner: 'inner' in attack ? attack.inner : undefined })}, ${attack.norm === 2 ? 'L2' : 'Linf'} xi=${attack.xi})`,
  );
  const res = await craft(model, run.X, method, attack, { signal: run.ctl.signal });
  try {
    const onVal = await evaluatePerturbation(model, run.V, res.v);
    const onX = await evaluatePerturbation(model, run.X, res.v, { cleanPred: res.cleanPred });
    const previous = r > 0 ? await previousFoolingRate(run, model, r, onVal.cleanPred) : null;
    await writePerturbation(roundFolder(run.job.out, r).attack, res.v);
    const row: RoundRecord = {
      round: r,
      card,
      cleanAccuracy: onVal.cleanAccuracy!,
      foolingRate: onVal.foolingRate,
      foolingRateOnX: onX.foolingRate,
      previousFoolingRate: previous,
      epochs,
      seconds: (Date.now() - started) / 1000,
    };
    log.info(
      `round ${r}: clean accuracy ${pct(row.cleanAccuracy)}, fresh UAP fools ${pct(row.foolingRate)} of the validation images` +
        (previous !== null ? `; the previous round's UAP now fools ${pct(previous)}` : ''),
    );
    return row;
  } finally {
    res.v.dispose();
  }
}
