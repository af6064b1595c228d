import type { PerturbationFormat } from '../perturbation/file.js';
import { existsSync, statSync } from 'node:fs';
import { readRunConfig } from '../run/config.js';
import { basename, join } from 'node:path';
import { UsageError } from '../errors.js';
import { foolingRate } from '../evaluation/scoring.js';
import { localExecutor, type Executor } from '../run/executor.js';
import { loadModel } from '../import/load.js';
import { loadPerturbation, OWN_FORMAT } from '../perturbation/file.js';
import { openSet, dataFolder, defaultData } from '../data/sets.js';
import type { Log } from '../log.js';
import type { CardOverrides } from '../import/load.js';
import type { TopLevelSpec } from '../report/plots.js';
import { pct, pctRange } from '../report/format.js';
import { wilsonInterval } from '../math/interval.js';
import type { Backend } from '../engine/backend.js';

/**
 * Transfer of universal perturbations across models (paper, Table 2): every perturbation evaluated on
 * every model. A perturbation of another input size is resized to the model's (bilinear, per channel,
 * in pixel units: tf.image.resizeBilinear); its norm changes with the resize, which the JSON records.
 */

export interface TransferSource {
  /** Row name. */
  name: string;
  /** The model it was crafted on, when known (a run directory's config.json says): a model spec as `loadModel` takes it. */
  craftedOn: string | null;
  /** Card fields the run was given as flags, to load that model the same way. */
  card?: CardOverrides;
  file: string;
  /** How the file is stored: uap's own for run directories, else as given. */
  format: PerturbationFormat;
}

export interface TransferResult {
  sources: TransferSource[];
  /** Column models. */
  models: string[];
  /** foolingRate[row][col]. */
  foolingRate: number[][];
  /** 95% Wilson interval of each cell over its column's images. */
  interval: [number, number][][];
  /** Perturbations crafted on the same model (seeds, settings) summarised per column: the spread a single run hides. */
  spread: TransferSpread[];
  /** Validation images per column. */
  images: number[];
  /** Folder of images per column. */
  data: string[];
}

/** Two or more rows crafted on one model, per tested-on column: mean, standard deviation and range over the rows. */
export interface TransferSpread {
  craftedOn: string;
  testedOn: string;
  runs: number;
  mean: number;
  sd: number;
  min: number;
  max: number;
}

/** A run directory (config.json + perturbation.npy), or a .npy / .npz file stored as `format` says. */
export function transferSource(spec: string, format: PerturbationFormat = {}): TransferSource {
  if (!existsSync(spec)) throw new UsageError(`${spec}: not found (expected a run directory or a .npy / .npz perturbation)`);
  if (statSync(spec).isDirectory()) {
    const file = join(spec, 'perturbation.npy');
    if (!existsSync(file)) throw new UsageError(`${spec}: no perturbation.npy in this run directory`);
    // No readable config.json: a perturbation whose model is not known.
    const config = readRunConfig(spec);
    const craftedOn = config?.modelSpec ?? config?.model ?? null;
    const card = config?.modelCard;
    return { name: craftedOn ? `${craftedOn} (${basename(spec)})` : basename(spec), craftedOn, card, file, format: OWN_FORMAT };
  }
  if (!/\.np[yz]$/.test(spec)) throw new UsageError(`${spec}: expected a run directory or a .npy / .npz perturbation`);
  return { name: basename(spec).replace(/\.np[yz]$/, ''), craftedOn: null, file: spec, format };
}

export async function transferMatrix(
  givenSources: TransferSource[],
  givenModels: string[],
  opts: {
    backend: Backend;
    assets: string;
    card?: CardOverrides;
    data?: string;
    limit?: number;
    sample?: number;
    batchSize?: number;
    log: Log;
    /** Where each column's labels are computed (default: here). */
    exec?: Executor;
  },
): Promise<TransferResult> {
  if (givenSources.length === 0) throw new UsageError('transfer: give at least one run directory or .npy perturbation');
  if (givenModels.length === 0)
    throw new UsageError('transfer: no models to test on (pass {models}, or run directories whose config.json names a model)');
  const { sources, models } = diagonalOrder(givenSources, givenModels);
  const foolingRates: number[][] = sources.map(() => []);
  const images: number[] = [];
  const data: string[] = [];
  const quiet: Log = { info: () => {}, warn: () => {} };
  for (const name of models) {
    // A model a run was crafted on loads with that run's card fields, completed by the given ones.
    const fromRun = sources.find((s) => s.craftedOn === name)?.card;
    const card = { ...fromRun, ...opts.card };
    const model = await loadModel(name, { assets: opts.assets, card, backend: opts.backend }, opts.log);
    try {
      const dir = opts.data ?? defaultData(model, opts.assets).val;
      const set = openSet(model, dir, {
        limit: opts.limit,
        sample: opts.sample === undefined ? undefined : { count: opts.sample, seed: 0 },
        assets: opts.assets,
        log: opts.log,
        what: `${name} images`,
      });
      // Every perturbation on this model in one pass over its images.
      const vs = sources.map((src) => {
        const v = loadPerturbation(src.file, model, quiet, src.format);
        const data = v.dataSync() as Float32Array;
        v.dispose();
        return data;
      });
      const place = { model: { spec: name, card }, data: opts.data ?? null, role: 'val' as const, dir: dataFolder(dir, opts.assets) };
      const exec = opts.exec ?? localExecutor;
      const [clean, ...advs] = await exec.labels({ model, set, place }, vs, { batchSize: opts.batchSize });
      advs.forEach((adv, r) => foolingRates[r].push(foolingRate(clean, adv)));
      images.push(set.size);
      data.push(dir);
    } finally {
      model.dispose();
    }
  }
  const interval = foolingRates.map((row) => row.map((rate, c) => wilsonInterval(rate, images[c])));
  return { sources, models, foolingRate: foolingRates, interval, spread: transferSpread(sources, models, foolingRates), images, data };
}

/**
 * Crafted-on cells on the diagonal: the columns of models some row was crafted on first (in the given
 * order), then the others; rows in the order of their model's column (stable; rows of other models last).
 */
export function diagonalOrder(sources: TransferSource[], models: string[]): { sources: TransferSource[]; models: string[] } {
  const crafted = new Set(sources.map((s) => s.craftedOn));
  const columns = [...models.filter((m) => crafted.has(m)), ...models.filter((m) => !crafted.has(m))];
  const at = (s: TransferSource) => {
    const i = s.craftedOn === null ? -1 : columns.indexOf(s.craftedOn);
    return i < 0 ? columns.length : i;
  };
  const rows = sources
    .map((s, i) => ({ s, i }))
    .sort((a, b) => at(a.s) - at(b.s) || a.i - b.i)
    .map(({ s }) => s);
  return { sources: rows, models: columns };
}

/** Mean, standard deviation (n - 1) and range per (crafted-on model, column) over the rows crafted on that model, where there are two or more. */
export function transferSpread(sources: TransferSource[], models: string[], rates: number[][]): TransferSpread[] {
  const out: TransferSpread[] = [];
  for (const craftedOn of new Set(sources.map((s) => s.craftedOn))) {
    const rows = sources.flatMap((s, r) => (craftedOn !== null && s.craftedOn === craftedOn ? [r] : []));
    if (rows.length < 2) continue;
    models.forEach((testedOn, c) => {
      const xs = rows.map((r) => rates[r][c]);
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1));
      out.push({ craftedOn: craftedOn!, testedOn, runs: xs.length, mean, sd, min: Math.min(...xs), max: Math.max(...xs) });
    });
  }
  return out;
}

/** The matrix with each cell's 95% interval (crafted-on cells in bold), then the spread over runs crafted on one model. */
export function transferMarkdown(t: TransferResult): string {
  const head = `| crafted on \\ tested on | ${t.models.join(' | ')} |\n|---|${t.models.map(() => '---').join('|')}|`;
  const rows = t.sources.map(
    (s, r) =>
      `| ${s.name} | ${t.foolingRate[r]
        .map((v, c) => {
          const rate = s.craftedOn === t.models[c] ? `**${pct(v)}**` : pct(v);
          return `${rate} (${pctRange(t.interval[r][c])})`;
        })
        .join(' | ')} |`,
  );
  const table = [head, ...rows].join('\n') + '\n';
  const note = `\nCells: fooling rate on the column's validation images (${[...new Set(t.images)].join(' / ')}), 95% Wilson interval in brackets.\n`;
  if (!t.spread.length) return table + note;
  const spread = [
    '',
    'Spread over the perturbations crafted on one model (mean ± standard deviation, range):',
    '',
    `| crafted on (runs) \\ tested on | ${t.models.join(' | ')} |`,
    `|---|${t.models.map(() => '---').join('|')}|`,
    ...[...new Set(t.spread.map((x) => x.craftedOn))].map((m) => {
      const cells = t.spread.filter((x) => x.craftedOn === m);
      return `| ${m} (${cells[0].runs}) | ${cells.map((x) => `${pct(x.mean)} ± ${(x.sd * 100).toFixed(1)} (${pctRange([x.min, x.max])})`).join(' | ')} |`;
    }),
  ];
  return table + note + spread.join('\n') + '\n';
}

/**
 * Heatmap (rows: crafted on, columns: tested on) as a Vega-Lite spec. Each cell shows its rate and 95%
 * interval; a row's run folder goes on a second line of its label, so long names are not cut.
 */
export function transferSpec(t: TransferResult): TopLevelSpec {
  const lines = (s: string) => s.replace(/ \(/, '\n(');
  const values = t.sources.flatMap((s, r) =>
    t.models.map((m, c) => ({
      craftedOn: lines(s.name),
      testedOn: m,
      rate: t.foolingRate[r][c],
      label: `${(t.foolingRate[r][c] * 100).toFixed(0)}%`,
      interval: `${(t.interval[r][c][0] * 100).toFixed(0)}-${(t.interval[r][c][1] * 100).toFixed(0)}`,
      own: s.craftedOn === m,
    })),
  );
  const textColor = { condition: { test: 'datum.rate > 0.5', value: 'white' }, value: 'black' };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Fooling rate of universal perturbations across models',
      subtitle: 'rows: crafted on; columns: tested on; 95% interval below each rate; outlined: the model it was crafted on',
    },
    data: { values },
    encoding: {
      x: { field: 'testedOn', type: 'nominal', title: null, sort: t.models, axis: { orient: 'top', labelAngle: -30, labelLimit: 400 } },
      y: {
        field: 'craftedOn',
        type: 'nominal',
        title: null,
        sort: t.sources.map((s) => lines(s.name)),
        axis: { labelLimit: 400, labelExpr: "split(datum.label, '\\n')" },
      },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'rate', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1], scheme: 'orangered' } },
          stroke: { condition: { test: 'datum.own', value: '#111' }, value: null },
          strokeWidth: { condition: { test: 'datum.own', value: 2 }, value: 0 },
        },
      },
      { mark: { type: 'text', fontSize: 12, dy: -6 }, encoding: { text: { field: 'label' }, color: textColor } },
      { mark: { type: 'text', fontSize: 9, dy: 8 }, encoding: { text: { field: 'interval' }, color: textColor } },
    ],
    config: { view: { step: 64 } },
  } as TopLevelSpec;
}
