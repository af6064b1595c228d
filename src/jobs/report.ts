import { basename, dirname, join } from 'node:path';
import { buildReport } from '../report/html.js';
import { ReportFigures } from '../report/plots.js';
import { writeText } from '../run/write.js';

/** Options of `uap report`: run directories (of compute, the analyses, finetune) in one page. */
export interface ReportJob {
  dirs: string[];
  /** The HTML file (default: report.html in the run directory when there is one, else runs/report.html). */
  out?: string;
  title?: string;
}

/**
 * `uap report`: one self-contained HTML page for the run directories, and each of its plots as an SVG
 * file (vector, for a paper) in `<name>-figures/` beside it.
 */
export async function reportJob(job: ReportJob): Promise<{ file: string; bytes: number; figures: string[] }> {
  const figures = new ReportFigures();
  const html = await buildReport(job.dirs, job.title, figures);
  const file = job.out ?? (job.dirs.length === 1 ? join(job.dirs[0], 'report.html') : 'runs/report.html');
  const folder = join(dirname(file), `${basename(file).replace(/\.html?$/i, '')}-figures`);
  const written = figures.files.map((f) => {
    const path = join(folder, f.name);
    writeText(path, f.svg);
    return path;
  });
  writeText(file, html);
  return { file, bytes: html.length, figures: written };
}
