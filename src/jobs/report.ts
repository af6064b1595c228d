import { join } from 'node:path';
import { buildReport } from '../report/html.js';
import { writeText } from '../io/run.js';

/** Options of `uap report`: run directories (of compute, the analyses, finetune) in one page. */
export interface ReportJob {
  dirs: string[];
  /** The HTML file (default: report.html in the run directory when there is one, else runs/report.html). */
  out?: string;
  title?: string;
}

/** `uap report`: one self-contained HTML page for the run directories. */
export async function reportJob(job: ReportJob): Promise<{ file: string; bytes: number }> {
  const html = await buildReport(job.dirs, job.title);
  const file = job.out ?? (job.dirs.length === 1 ? join(job.dirs[0], 'report.html') : 'runs/report.html');
  writeText(file, html);
  return { file, bytes: html.length };
}
