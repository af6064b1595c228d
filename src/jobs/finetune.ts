import { join } from 'node:path';
import { runFinetune, type DefenceResult, type FinetuneControl, type DefenceJob } from '../defence/finetune.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import { namedLog } from '../log.js';
import { reportJob } from './report.js';

/** Options of `uap finetune`: the defence's, and a queue whose workers craft each round's pool. */
export interface FinetuneJob extends DefenceJob {
  /** Craft each round's pool members on `uap worker`s through this queue, all at once: the same members. */
  queue?: QueueOption;
}

/** `uap finetune`: the defence (src/defence/finetune.ts) with its pool crafted on the queue when given, then its report (report.html in the run folder). */
export async function finetuneJob(
  job: FinetuneJob,
  ctl: Omit<FinetuneControl, 'exec'> = {},
): Promise<{ result: DefenceResult; files: string[] }> {
  const log = namedLog(ctl.log);
  const { queue, ...defence } = job;
  const result = await withExecutor(queue, log, (exec) => runFinetune(defence, { ...ctl, log, exec }));
  const report = await reportJob({ dirs: [result.out], title: `uap finetune: ${String(result.config.model)}` });
  return { result, files: ['defence.md', 'defence.json', 'config.json'].map((f) => join(result.out, f)).concat(report.file) };
}
