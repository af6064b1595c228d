import { AbortedError } from '../errors.js';

/**
 * One training epoch over `order` (shuffled image indices) in minibatches: `step` trains on one and
 * gives its mean loss. Progress after each minibatch; the epoch's mean loss. The signal is heard
 * between minibatches, so an interrupted epoch leaves the last saved one to resume from.
 */
export async function runEpoch(
  order: number[],
  batchSize: number,
  step: (idx: number[]) => Promise<number>,
  progress: (done: number, loss: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  let lossSum = 0;
  for (let s = 0; s < order.length; s += batchSize) {
    if (signal?.aborted) throw new AbortedError('fine-tuning interrupted; rerun with {resume} to continue from the last saved epoch');
    const idx = order.slice(s, s + batchSize);
    lossSum += (await step(idx)) * idx.length;
    const done = Math.min(s + batchSize, order.length);
    progress(done, lossSum / done);
    await new Promise((r) => setTimeout(r, 0)); // lets Ctrl-C through
  }
  return lossSum / order.length;
}
