import { join } from 'node:path';
import type { Backend } from '../engine/backend.js';
import { namedLog } from '../log.js';
import { assetsDir } from '../paths.js';
import type { PerturbationFormat } from '../perturbation/file.js';
import { writeJson, writeText } from '../run/write.js';
import { transferMatrix, transferSource, transferMarkdown, transferSpec, type TransferResult } from '../analysis/transfer.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { withExecutor, type QueueOption } from '../scale/coordinator.js';
import type { JobControl } from './control.js';

/** Options of `uap transfer`: every perturbation scored on every model (the paper's Table 2). */
export interface TransferJob {
  backend: Backend;
  /** Run directories of `uap compute` (their config.json names the model) or .npy / .npz perturbations. */
  sources: string[];
  /** How the .npy / .npz sources are stored (default: detected). */
  format?: PerturbationFormat;
  /** Models to test on (default: the models the runs were crafted on). */
  models?: string[];
  assets?: string;
  /** Images to test on (default: each model's validation set), at most `limit`, or a seeded sample of `sample`. */
  data?: string;
  limit?: number;
  sample?: number;
  batchSize?: number;
  /** Folder for transfer.json, transfer.md, transfer.svg. */
  out: string;
  /** Score on `uap worker`s through this queue, in shards: the same labels. */
  queue?: QueueOption;
}

/** `uap transfer`: the matrix, written to the job's folder; the Markdown table beside the files. */
export async function transferJob(
  job: TransferJob,
  ctl: JobControl = {},
): Promise<{ transfer: TransferResult; markdown: string; files: string[] }> {
  const log = namedLog(ctl.log);
  const rows = job.sources.map((s) => transferSource(s, job.format));
  const models = job.models ?? [...new Set(rows.map((r) => r.craftedOn).filter((m): m is string => m !== null))];
  const transfer = await withExecutor(job.queue, log, (exec) =>
    transferMatrix(rows, models, {
      backend: job.backend,
      assets: assetsDir(job.assets),
      data: job.data,
      limit: job.limit,
      sample: job.sample,
      batchSize: job.batchSize,
      log,
      exec,
    }),
  );
  const markdown = transferMarkdown(transfer);
  const files = ['transfer.json', 'transfer.md', 'transfer.svg'].map((f) => join(job.out, f));
  writeJson(files[0], transfer);
  writeText(files[1], markdown);
  writeText(files[2], await vegaLiteToSvg(transferSpec(transfer)));
  return { transfer, markdown, files };
}
