import type { PerturbationFormat } from '../io/perturbationFile.js';
import { existsSync, statSync } from 'node:fs';
import { readBoundedText } from '../io/bounded.js';
import { basename, join } from 'node:path';
import { UsageError } from '../errors.js';
import { predictMany, foolingRate } from '../model/scoring.js';
import { loadModel } from '../model/load.js';
import { loadPerturbation, OWN_FORMAT } from '../io/perturbationFile.js';
import { openSet, dataFolder, defaultData } from '../data/sets.js';
import type { Log } from '../log.js';
import type { CardOverrides } from '../model/load.js';
import type { TopLevelSpec } from '../report/plots.js';
import type { Classifier } from '../model/classifier.js';
import type { StreamedImages } from '../data/stream.js';
import { pct } from '../report/format.js';
import type { Engine } from '../backend.js';

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
  /** Validation images per column. */
  images: number[];
  /** Folder of images per column. */
  data: string[];
}

/** A run directory (config.json + perturbation.npy), or a .npy / .npz file stored as `format` says. */
export function transferSource(spec: string, format: PerturbationFormat = {}): TransferSource {
  if (!existsSync(spec)) throw new UsageError(`${spec}: not found (expected a run directory or a .npy / .npz perturbation)`);
  if (statSync(spec).isDirectory()) {
    const file = join(spec, 'perturbation.npy');
    if (!existsSync(file)) throw new UsageError(`${spec}: no perturbation.npy in this run directory`);
    const config = ((): { model?: unknown; modelSpec?: unknown; modelCard?: unknown } | null => {
      try {
        return JSON.parse(readBoundedText(join(spec, 'config.json'), { what: 'run' })) as { modelSpec?: unknown } | null;
      } catch {
        return null; // no readable config.json: a perturbation whose model is not known
      }
    })();
    const text = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 4096 ? v : undefined);
    const craftedOn = (config && (text(config.modelSpec) ?? text(config.model))) ?? null;
    const c = config?.modelCard;
    if (c !== undefined && (typeof c !== 'object' || c === null || Array.isArray(c)))
      throw new UsageError(`${spec}: config.json's "modelCard" is not an object of card fields (a damaged run folder?)`);
    const card = c as CardOverrides | undefined;
    return { name: craftedOn ? `${craftedOn} (${basename(spec)})` : basename(spec), craftedOn, card, file, format: OWN_FORMAT };
  }
  if (!/\.np[yz]$/.test(spec)) throw new UsageError(`${spec}: expected a run directory or a .npy / .npz perturbation`);
  return { name: basename(spec).replace(/\.np[yz]$/, ''), craftedOn: null, file: spec, format };
}

/** A column's labels computed elsewhere (on workers): clean, then with each v; the same labels as here. */
export type RemoteLabels = (
  column: { spec: string; card: CardOverrides; model: Classifier; set: StreamedImages; data: string | null; folder: string },
  vs: Float32Array[],
) => Promise<Int32Array[]>;

export async function transferMatrix(
  sources: TransferSource[],
  models: string[],
  opts: {
    engine: Engine;
    assets: string;
    card?: CardOverrides;
    data?: string;
    limit?: number;
    sample?: number;
    batchSize?: number;
    log: Log;
    remote?: RemoteLabels;
  },
): Promise<TransferResult> {
  if (sources.length === 0) throw new UsageError('transfer: give at least one run directory or .npy perturbation');
  if (models.length === 0)
    throw new UsageError('transfer: no models to test on (pass {models}, or run directories whose config.json names a model)');
  const foolingRates: number[][] = sources.map(() => []);
  const images: number[] = [];
  const data: string[] = [];
  const quiet: Log = { info: () => {}, warn: () => {} };
  for (const name of models) {
    // A model a run was crafted on loads with that run's card fields, completed by the given ones.
    const fromRun = sources.find((s) => s.craftedOn === name)?.card;
    const card = { ...fromRun, ...opts.card };
    const model = await loadModel(name, { assets: opts.assets, card, engine: opts.engine }, opts.log);
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
      const column = { spec: name, card, model, set, data: opts.data ?? null, folder: dataFolder(dir, opts.assets) };
      const [clean, ...advs] = opts.remote ? await opts.remote(column, vs) : await predictMany(model, set, [null, ...vs], opts.batchSize);
      advs.forEach((adv, r) => foolingRates[r].push(foolingRate(clean, adv)));
      images.push(set.size);
      data.push(dir);
    } finally {
      model.dispose();
    }
  }
  return { sources, models, foolingRate: foolingRates, images, data };
}

export function transferMarkdown(t: TransferResult): string {
  const head = `| crafted on \\ tested on | ${t.models.join(' | ')} |\n|---|${t.models.map(() => '---').join('|')}|`;
  const rows = t.sources.map(
    (s, r) =>
      `| ${s.name} | ${t.foolingRate[r]
        .map((v, c) => {
          const cell = pct(v);
          return s.craftedOn === t.models[c] ? `**${cell}**` : cell;
        })
        .join(' | ')} |`,
  );
  return [head, ...rows].join('\n') + '\n';
}

/** Heatmap (rows: crafted on, columns: tested on) as a Vega-Lite spec. */
export function transferSpec(t: TransferResult): TopLevelSpec {
  const values = t.sources.flatMap((s, r) =>
    t.models.map((m, c) => ({
      craftedOn: s.name,
      testedOn: m,
      rate: t.foolingRate[r][c],
      label: `${(t.foolingRate[r][c] * 100).toFixed(0)}%`,
    })),
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Fooling rate of universal perturbations across models',
    data: { values },
    encoding: {
      x: { field: 'testedOn', type: 'nominal', title: 'tested on', sort: t.models, axis: { labelAngle: -30, labelLimit: 320 } },
      y: { field: 'craftedOn', type: 'nominal', title: 'crafted on', sort: t.sources.map((s) => s.name), axis: { labelLimit: 320 } },
    },
    layer: [
      {
        mark: 'rect',
        encoding: { color: { field: 'rate', type: 'quantitative', title: 'fooling rate', scale: { domain: [0, 1], scheme: 'orangered' } } },
      },
      {
        mark: { type: 'text', fontSize: 11 },
        encoding: { text: { field: 'label' }, color: { condition: { test: 'datum.rate > 0.5', value: 'white' }, value: 'black' } },
      },
    ],
    config: { view: { step: 56 } },
  } as TopLevelSpec;
}
