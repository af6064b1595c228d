import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeAtomic } from '../src/io/atomic.js';
import { PROJECT_ROOT } from '../src/paths.js';
import { replaceDocBlock } from '../bench/docBlock.js';
import { pct } from '../src/math/percent.js';

/**
 * The README's main results table, from runs: each row is a command whose metrics.json is kept in
 * docs/results/ (`npm run docs:results -- --run [id ...]` runs the commands and keeps their figures;
 * `npm run docs:results` renders the table from what is kept). test/results.test.ts fails when the
 * README's table is not the rendering of the kept figures, so no figure is typed by hand.
 */

/** One row: what it shows, the command a reader runs, and where that command writes metrics.json. */
export interface ResultRow {
  id: string;
  setting: string;
  /** As the reader types it. */
  command: string;
  /** The uap CLI's arguments that make the figures (the same run as `command`). */
  args: string[];
  /** The run folder holding metrics.json once it ran. */
  out: string;
  /** 'compute': a crafting run's metrics.json; 'evaluate': a perturbation scored by `uap evaluate`. */
  kind: 'compute' | 'evaluate';
  /** The crafting set, for an evaluated perturbation made elsewhere. */
  craftedOn?: string;
}

export const RESULT_ROWS: ResultRow[] = [
  {
    id: 'imagenet-algorithm1',
    setting: 'MobileNet v1 0.25, Linf 10, Algorithm 1',
    command: 'npm run demo:imagenet',
    args: ['demo', '--imagenet', '--out', 'runs/results/imagenet-algorithm1'],
    out: 'runs/results/imagenet-algorithm1',
    kind: 'compute',
  },
  {
    id: 'imagenet-sgd',
    setting: 'MobileNet v1 0.25, Linf 10, SGD-UAP',
    command: 'uap compute -m mobilenet_v1_0.25_224 --method sgd',
    args: ['compute', '-m', 'mobilenet_v1_0.25_224', '--method', 'sgd', '--out', 'runs/results/imagenet-sgd', '--force'],
    out: 'runs/results/imagenet-sgd',
    kind: 'compute',
  },
  {
    id: 'imagenet-paper',
    setting: 'MobileNet v1 0.25, Linf 10, Algorithm 1, `--variant paper`',
    command: 'uap compute -m mobilenet_v1_0.25_224 --variant paper --max-passes 2',
    args: [
      'compute',
      '-m',
      'mobilenet_v1_0.25_224',
      '--variant',
      'paper',
      '--max-passes',
      '2',
      '--out',
      'runs/results/imagenet-paper',
      '--force',
    ],
    out: 'runs/results/imagenet-paper',
    kind: 'compute',
  },
  {
    id: 'fashion-algorithm1',
    setting: 'Fashion-MNIST CNN (embedded), Linf 40, Algorithm 1',
    command: 'npm run demo',
    args: ['demo', '--out', 'runs/results/fashion-algorithm1'],
    out: 'runs/results/fashion-algorithm1',
    kind: 'compute',
  },
  {
    id: 'caffenet-transfer',
    setting: "the paper authors' CaffeNet perturbation (transfer), Linf 10",
    command: 'uap evaluate -m mobilenet_v1_0.25_224 --perturbation $UAP_ASSETS/data/lts4_universal/npy/CaffeNet.npy',
    args: [
      'evaluate',
      '-m',
      'mobilenet_v1_0.25_224',
      '--perturbation',
      '{assets}/data/lts4_universal/npy/CaffeNet.npy',
      '--out',
      'runs/results/caffenet-transfer',
    ],
    out: 'runs/results/caffenet-transfer',
    kind: 'evaluate',
    craftedOn: '10,000 ImageNet images, on CaffeNet',
  },
];

/** What docs/results/<id>.json keeps of a run: the figures the table shows, and when and how they were made. */
export interface KeptResult {
  id: string;
  command: string;
  /** The uap arguments that ran (a row whose args change no longer matches its kept figures). */
  args: string[];
  date: string;
  /** The machine: its cores, and its load average as the run ended (other work slows the seconds). */
  cores: number;
  loadAverage?: number[];
  kind: ResultRow['kind'];
  metrics: Record<string, unknown>;
}

const RESULTS_DIR = join(PROJECT_ROOT, 'docs', 'results');
/** A rate as a percentage, or an empty cell. */
const cell = (x: unknown) => pct(x, '');
const num = (x: unknown) => (typeof x === 'number' ? x : undefined);
const at = (o: unknown, ...path: string[]): unknown =>
  path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);

/** One table row of a kept result. */
function renderRow(row: ResultRow, kept: KeptResult): string {
  const m = kept.metrics;
  const cells =
    row.kind === 'compute'
      ? [
          row.setting,
          `${num(at(m, 'onX', 'images'))} images, ${num(at(m, 'run', 'passes'))} pass(es) (${Math.round(num(at(m, 'run', 'seconds')) ?? 0)} s)`,
          `**${cell(at(m, 'onVal', 'foolingRate'))}** (${num(at(m, 'onVal', 'images'))} images)`,
          cell(at(m, 'onX', 'foolingRate')),
          cell(at(m, 'randomNoiseOnVal', 'sameLp', 'norm') === 'inf' ? at(m, 'randomNoiseOnVal', 'sameLp', 'mean') : undefined),
          cell(at(m, 'randomNoiseOnVal', 'sameL2', 'mean')),
        ]
      : [
          row.setting,
          row.craftedOn ?? '',
          `${cell(at(m, 'foolingRate'))} on ${at(m, 'model')} (${num(at(m, 'images'))} images)`,
          '',
          cell(at(m, 'randomSameLinf', 'mean')),
          cell(at(m, 'randomSameL2', 'mean')),
        ];
  return `| ${[...cells, `\`${row.command}\``].join(' | ')} |`;
}

/** The kept result of a row, or undefined when it has not been run here yet. */
export function readKept(id: string, dir = RESULTS_DIR): KeptResult | undefined {
  const file = join(dir, `${id}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as KeptResult) : undefined;
}

/** The README's results table: every row with kept figures, in RESULT_ROWS' order. */
export function resultsTable(dir = RESULTS_DIR): string {
  const found = RESULT_ROWS.flatMap((row) => {
    const k = readKept(row.id, dir);
    return k ? [{ row, kept: k }] : [];
  });
  const rows = found.map((f) => renderRow(f.row, f.kept));
  const kept = found.map((f) => f.kept);
  const dates = kept.map((k) => k.date.slice(0, 10));
  const cores = [...new Set(kept.map((k) => k.cores))].join(' or ');
  return [
    '| model, setting | X | val fooling rate | X fooling rate | random, same Linf | random, same L2 | run |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Figures from docs/results/ (runs of ${[...new Set(dates)].sort().join(', ')} on ${cores} cores; their seconds are wall time, not a benchmark: docs/speed.md has those); \`npm run docs:results -- --run\` reruns them.`,
  ].join('\n');
}

/**
 * The caption's figures under the ImageNet picture: the demo's held-out fooling rate and noise baseline
 * (its kept run), and ART's on the same model, images and norm (bench/results/art-inf-1000.json): the
 * caption as one paragraph.
 */
export function headline(dir = RESULTS_DIR, artFile = join(PROJECT_ROOT, 'bench', 'results', 'art-inf-1000.json')): string {
  const kept = readKept('imagenet-algorithm1', dir);
  const m = kept?.metrics;
  if (!m) return '';
  const art = existsSync(artFile) ? at(JSON.parse(readFileSync(artFile, 'utf8')), 'uap', 'foolingV') : undefined;
  return (
    '*`npm run demo:imagenet`: one perturbation `v` (bottom left, scaled for visibility; Linf = 10 on [0, 255]) ' +
    `computed by Algorithm 1 on MobileNet v1 0.25 from the ${num(at(m, 'onX', 'images'))} ImageNet sample images ` +
    `(${num(at(m, 'run', 'passes'))} pass(es) on ${kept?.cores} cores). ` +
    "Top: validation images and the model's labels; middle: the same images plus `v`, and the labels it now gives. " +
    `It changes the label of ${cell(at(m, 'onVal', 'foolingRate'))} of the ${num(at(m, 'onVal', 'images'))} validation images it never saw ` +
    `(random noise of the same Linf norm: ${cell(at(m, 'randomNoiseOnVal', 'sameLp', 'mean'))}).` +
    (art !== undefined
      ? ` The Adversarial Robustness Toolbox's \`UniversalPerturbation\` on the same model, images and norm: ${cell(art)} (bench/results/art-inf-1000.json).`
      : '') +
    ' See [Algorithm 1 at 200-1000 images](docs/results.md#algorithm-1-at-200-1000-images).*'
  );
}

/** Runs a row's command with the built CLI and keeps the figures of its metrics.json. */
function runRow(row: ResultRow, assets: string): void {
  const args = row.args.map((a) => a.replace('{assets}', assets));
  process.stdout.write(`${row.id}: uap ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js'), ...args, '--assets', assets], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`${row.id}: uap exited with ${r.status}`);
  const metrics = JSON.parse(readFileSync(join(PROJECT_ROOT, row.out, 'metrics.json'), 'utf8')) as Record<string, unknown>;
  // Per-class rows stay in the run folder; this machine's paths stay out of the docs.
  for (const k of ['detail', 'validationDetail', 'perturbation', 'folder']) delete metrics[k];
  const kept: KeptResult = {
    id: row.id,
    command: row.command,
    args: row.args,
    date: new Date().toISOString(),
    cores: availableParallelism(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    kind: row.kind,
    metrics,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeAtomic(join(RESULTS_DIR, `${row.id}.json`), `${JSON.stringify(kept, null, 2)}\n`);
}

function main(): void {
  const argv = process.argv.slice(2);
  if (argv[0] === '--run') {
    const want = argv.slice(1);
    const assets = process.env.UAP_ASSETS ?? join(PROJECT_ROOT, '..', 'shared', 'assets');
    for (const row of RESULT_ROWS) if (!want.length || want.includes(row.id)) runRow(row, assets);
  }
  const readme = join(PROJECT_ROOT, 'README.md');
  if (!replaceDocBlock(readme, 'results', resultsTable())) throw new Error(`${readme}: no results block`);
  if (!replaceDocBlock(readme, 'headline', headline())) throw new Error(`${readme}: no headline block`);
  const kept = existsSync(RESULTS_DIR) ? readdirSync(RESULTS_DIR).length : 0;
  process.stdout.write(`wrote the results table of ${readme} from ${kept} kept run(s)\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main();
