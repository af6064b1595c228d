/**
 * Redraws the documentation's transfer figure and table (docs/transfer.{json,md,png}) from the rates of
 * the `uap transfer` run docs/transfer.json holds, with the current figure code: rows and columns on
 * the diagonal, each cell's interval (from its rate and the column's image count), the spread.
 *   node dist/scripts/docs-transfer.js
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { wilsonInterval } from '../src/math/interval.js';
import { diagonalOrder, transferMarkdown, transferSpec, transferSpread, type TransferResult } from '../src/analysis/transfer.js';
import { vegaLiteToSvg } from '../src/report/plots.js';

const file = join(PROJECT_ROOT, 'docs', 'transfer.json');
const run = JSON.parse(readFileSync(file, 'utf8')) as TransferResult;
const { sources, models } = diagonalOrder(run.sources, run.models);
const rows = sources.map((s) => run.sources.indexOf(s));
const cols = models.map((m) => run.models.indexOf(m));
const rates = rows.map((r) => cols.map((c) => run.foolingRate[r][c]));
const images = cols.map((c) => run.images[c]);
const t: TransferResult = {
  sources,
  models,
  foolingRate: rates,
  interval: rates.map((row) => row.map((x, c) => wilsonInterval(x, images[c]))),
  spread: transferSpread(sources, models, rates),
  images,
  data: cols.map((c) => run.data[c]),
};
writeAtomic(file, JSON.stringify(t, null, 2) + '\n');
writeAtomic(join(PROJECT_ROOT, 'docs', 'transfer.md'), transferMarkdown(t));
const svg = await vegaLiteToSvg(transferSpec(t));
writeAtomic(join(PROJECT_ROOT, 'docs', 'transfer.png'), await sharp(Buffer.from(svg), { density: 110 }).png().toBuffer());
process.stdout.write(transferMarkdown(t));
