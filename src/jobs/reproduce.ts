import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend } from '../engine/backend.js';
import type { Method } from '../attacks/methods.js';
import type { RunControl } from '../attacks/universal.js';
import type { NormSweep } from '../analysis/baseline.js';
import type { FoolingGraph } from '../analysis/graph.js';
import type { NormalsResult } from '../analysis/normals.js';
import type { SizePoint } from '../analysis/sizes.js';
import { transferMarkdown, type TransferResult } from '../analysis/transfer.js';
import { pct, pctInterval, pctRange } from '../report/format.js';
import { writeText } from '../run/write.js';
import { namedLog } from '../log.js';
import { assetsDir, assetsHint } from '../paths.js';
import { UsageError } from '../errors.js';
import { computeJob, type ComputeSummary } from './compute.js';
import { transferJob } from './transfer.js';
import { graphJob, baselineJob, type GraphResult } from './perturbationAnalyses.js';
import { sweepSizeJob, normalsJob } from './modelAnalyses.js';
import { reportJob } from './report.js';
import type { JobControl } from './control.js';
import type { QueueOption } from '../scale/coordinator.js';

/**
 * `uap reproduce`: the paper's experiments on the bundled models and images, with its settings scaled
 * to what the bundle holds (X = the 1000 sample images instead of 10,000; validation = the 1300
 * images instead of 50,000), or, with `paperScale`, Fashion-MNIST in the paper's counts; then the
 * report and a Markdown summary beside the paper's numbers.
 */

/** The models crafted on by default, and the extra models that only serve as transfer columns. */
export const REPRODUCE_MODELS = ['mobilenet_v1_0.25_224', 'mobilenet_v2_1.0_224_quant', 'darknet_tiny'];
const EXTRA_COLUMNS = ['tf2_mobilenet_v2_1.0_224_ptq', 'mobilenet_v1_0.25_128_quant'];

/** Options of `uap reproduce`. */
export interface ReproduceJob {
  backend: Backend;
  /** Crafting method of every perturbation (sgd reaches the paper's regime with the 1000 bundled images). */
  method: Method;
  /** Models to craft on (default REPRODUCE_MODELS, with two more transfer columns). */
  models?: string[];
  /** A few minutes: 100 images of X, 300 validation images, fewer sizes and normals. */
  quick?: boolean;
  /** The paper's counts on real images (only with the model fashion): X = 10,000 Fashion-MNIST training images, validation = the 10,000 test images. */
  paperScale?: boolean;
  /** Pass cap per perturbation. */
  maxPasses: number;
  /** Radii in pixels (default: Linf 10, L2 2000 at 224x224x3 scaled to keep the per-pixel RMS). */
  linf?: number;
  l2?: number;
  assets?: string;
  /** Folder for the runs, report.html and summary.md. */
  out: string;
  /** Every step on `uap worker`s through this queue, as each job would: the same figures. */
  queue?: QueueOption;
}

/** The settings of one reproduction. */
interface Plan {
  models: string[];
  columns: string[];
  limit?: number;
  valLimit?: number;
  sizes: number[];
  normals: number;
  /** Fashion-MNIST in the paper's counts: X sampled from the training images, the test images as validation. */
  data?: string;
  val?: string;
  sample?: number;
  /** Validation images as a seeded sample (the first files of class folders would be one or two classes). */
  valSample?: number;
  l2?: number;
  linf?: number;
}

function plan(job: ReproduceJob): Plan {
  const models = job.models ?? REPRODUCE_MODELS;
  const assets = assetsDir(job.assets);
  if (models.some((m) => m !== 'fashion') && !existsSync(assets))
    throw new UsageError(
      `reproduce: the ImageNet models need the shared assets folder (${assetsHint(assets)}): pass {assets} DIR or set UAP_ASSETS`,
    );
  const { quick, paperScale: paper } = job;
  if (paper && models.some((m) => m !== 'fashion'))
    throw new UsageError(
      "{paperScale}: only the embedded Fashion-MNIST model has real images in the paper's counts here (use {models} fashion)",
    );
  return {
    models,
    columns: job.models ? [] : EXTRA_COLUMNS,
    limit: quick && !paper ? 100 : undefined,
    valLimit: quick && !paper ? 300 : undefined,
    sizes: paper ? (quick ? [100, 1000] : [100, 500, 1000, 2000, 5000, 10000]) : quick ? [25, 50, 100] : [100, 250, 500, 1000],
    normals: quick ? 50 : 200,
    l2: job.l2,
    linf: job.linf,
    ...(paper ? { data: 'fashion:train', val: 'fashion:test', sample: quick ? 1000 : 10000, valSample: quick ? 2000 : undefined } : {}),
  };
}

/** One crafted perturbation of Table 1. */
export interface ReproducedRun {
  model: string;
  norm: 2 | 'inf';
  dir: string;
  summary: ComputeSummary;
}

export interface ReproduceResult {
  runs: ReproducedRun[];
  transfer: TransferResult;
  graph: GraphResult;
  baseline: { sweep: NormSweep; files: string[] };
  sizes: SizePoint[];
  normals: NormalsResult;
  /** summary.md's text. */
  summary: string;
  files: string[];
}

/** What the caller sees of each crafting run: a fresh progress display per run (the CLI's bars). */
export type RunProgress = () => Pick<RunControl, 'onProgress' | 'onPass'> & { stop(): void };

/** `uap reproduce`: Table 1 (every model and norm), Table 2 (transfer), then the first model's analyses, the report and summary.md. */
export async function reproduceJob(job: ReproduceJob, ctl: JobControl & { progress?: RunProgress } = {}): Promise<ReproduceResult> {
  const log = namedLog(ctl.log);
  const p = plan(job);
  const { backend, method, queue, out } = job;
  const assets = assetsDir(job.assets);
  const xi = (norm: 2 | 'inf') => (norm === 2 ? p.l2 : p.linf);
  const sets = { data: p.data, val: p.val, sample: p.sample, valSample: p.valSample };
  // 1. Table 1: one perturbation per model and norm, scored on X and on validation.
  const runs: ReproducedRun[] = [];
  for (const model of p.models)
    for (const norm of [2, 'inf'] as const) {
      const dir = join(out, `${model}-${norm === 2 ? 'l2' : 'linf'}`);
      log.info(`crafting on ${model}, ${norm === 2 ? `L2 ${p.l2 ?? '2000*'}` : `Linf ${p.linf ?? 10}`} (${method}) -> ${dir}`);
      const progress = ctl.progress?.();
      try {
        const options = { norm, maxPasses: job.maxPasses, ...(xi(norm) === undefined ? {} : { xi: xi(norm) }) };
        const summary = await computeJob(
          { model, assets: job.assets, backend, out: dir, ...sets, limit: p.limit, valLimit: p.valLimit, method, options, queue },
          { log, signal: ctl.signal, onProgress: progress?.onProgress, onPass: progress?.onPass },
        );
        runs.push({ model, norm, dir, summary });
      } finally {
        progress?.stop();
      }
    }
  // 2. Table 2: the Linf perturbations on every model (and the authors' CaffeNet perturbation).
  const linf = runs.filter((r) => r.norm === 'inf');
  const caffe = join(assets, 'data', 'lts4_universal', 'npy', 'CaffeNet.npy');
  const sources = [...linf.map((r) => r.dir), ...(existsSync(caffe) && p.models.some((m) => m !== 'fashion') ? [caffe] : [])];
  const transfer = await transferJob(
    {
      backend,
      sources,
      models: [...p.models, ...p.columns],
      assets: job.assets,
      data: p.val,
      limit: p.valLimit,
      sample: p.valSample,
      out: join(out, 'transfer'),
      queue,
    },
    { log },
  );
  // 3. The first model's analyses: fooling graph (Linf), norm curve (L2, as the paper's Fig. 8), size of X, normals.
  const first = p.models[0];
  const firstLinf = linf.find((r) => r.model === first)!;
  const firstL2 = runs.find((r) => r.model === first && r.norm === 2)!;
  const analysis = { backend, assets: job.assets, queue, limit: p.valLimit };
  const graph = await graphJob({ ...analysis, run: firstLinf.dir }, { log });
  const baseline = await baselineJob({ ...analysis, run: firstL2.dir, draws: 2, deepfool: true }, { log });
  const common = { backend, model: first, assets: job.assets, queue, ...sets, valLimit: p.valLimit, seed: 0 };
  const sweep = await sweepSizeJob(
    {
      ...common,
      method,
      options: { norm: 'inf', maxPasses: job.maxPasses, delta: 0.2, seed: 0, ...(p.linf === undefined ? {} : { xi: p.linf }) },
      sizes: p.sizes,
      out: join(out, 'sweep-size'),
    },
    { log },
  );
  // From a large X, the normals come from a seeded sample of it (the first files are one class).
  const normalsOf = p.sample ? { sample: p.normals } : { limit: p.normals };
  const normals = await normalsJob(
    { ...common, ...normalsOf, xi: p.l2, dims: [1, 10, 50, 100].filter((d) => d <= p.normals), draws: 3, out: join(out, 'normals') },
    { log },
  );
  // 4. The report and the summary beside the paper.
  const dirs = [...runs.map((r) => r.dir), join(out, 'transfer'), join(out, 'sweep-size'), join(out, 'normals')];
  const report = await reportJob({ dirs, out: join(out, 'report.html'), title: `uap reproduce (${method})` });
  const summary = summaryMarkdown(
    { runs, transfer: transfer.transfer, sizes: sweep.points, graph: graph.graph, baseline: baseline.sweep, normals: normals.normals },
    method,
    p,
  );
  writeText(join(out, 'summary.md'), summary);
  return {
    runs,
    transfer: transfer.transfer,
    graph,
    baseline,
    sizes: sweep.points,
    normals: normals.normals,
    summary,
    files: [report.file, join(out, 'summary.md')],
  };
}

/** summary.md: the reproduction's tables beside the paper's numbers. */
function summaryMarkdown(
  r: {
    runs: ReproducedRun[];
    transfer: TransferResult;
    sizes: SizePoint[];
    graph: FoolingGraph;
    baseline: NormSweep;
    normals: NormalsResult;
  },
  method: string,
  plan: Plan,
): string {
  const { runs } = r;
  const x = runs[0]?.summary.onX.images;
  const v = runs[0]?.summary.onVal?.images;
  // The radii the runs used (the first model's; the paper's by default, with L2 scaled to the input size).
  const radiusOf = (norm: 2 | 'inf') => Number(runs.find((run) => run.norm === norm)?.summary.config.xi);
  const l2 = plan.l2 === undefined ? 'L2 2000*' : `L2 ${radiusOf(2)}`;
  const linf = `Linf ${radiusOf('inf')}`;
  const first = plan.models[0];
  const lines = [
    `# uap reproduce (${method}; X = ${x} images, validation = ${v} images)`,
    '',
    '## Table 1: fooling rates (paper: 10,000 images in X, 50,000 validation images; CaffeNet .. ResNet-152)',
    '',
    'Each rate with its 95% Wilson interval over the images it was measured on.',
    '',
    `| model | ${l2}, X | ${l2}, val | ${linf}, X | ${linf}, val |`,
    '|---|---|---|---|---|',
    ...[...new Set(runs.map((run) => run.model))].map((m) => {
      const l2 = runs.find((run) => run.model === m && run.norm === 2)?.summary;
      const li = runs.find((run) => run.model === m && run.norm === 'inf')?.summary;
      const cell = (r: { foolingRate: number; images: number } | null | undefined) => (r ? pctInterval(r.foolingRate, r.images) : '-');
      return `| ${m} | ${cell(l2?.onX)} | ${cell(l2?.onVal)} | ${cell(li?.onX)} | ${cell(li?.onVal)} |`;
    }),
    '| paper (six networks) | 82.9-90.7% | 82.0-90.3% | 77.8-93.8% | 77.8-93.7% |',
    '',
    plan.l2 === undefined
      ? `\\* 2000 at 224x224x3; other input sizes keep the per-pixel RMS (2000 * sqrt(pixels / 150528)): ${radiusOf(2)} for ${runs[0]?.model}.`
      : '',
    '',
    `## Table 2: transfer at ${linf} (rows crafted on, columns tested on; paper: 39.2-74.0% off the diagonal)`,
    '',
    transferMarkdown(r.transfer),
  ];
  lines.push(
    `## Size of X (${first}, ${linf}; paper, GoogLeNet: 500 ~31%, 1000 ~37%, 2000 ~49%, 4000 ~69%)`,
    '',
    `| images in X | ${r.sizes.map((pt) => pt.size).join(' | ')} |`,
    `|---|${r.sizes.map(() => '---').join('|')}|`,
    `| validation fooling rate | ${r.sizes.map((pt) => pct(pt.valFoolingRate)).join(' | ')} |`,
    `| 95% interval | ${r.sizes.map((pt) => pctRange(pt.valInterval)).join(' | ')} |`,
    ...(r.sizes.some((pt) => pt.spread)
      ? [`| sd over seeds (points) | ${r.sizes.map((pt) => (pt.spread ? (pt.spread.sd * 100).toFixed(1) : '-')).join(' | ')} |`]
      : []),
    '',
  );
  const g = r.graph;
  lines.push(
    `## Dominant labels (${first}, ${linf}, validation; paper: a few labels receive most fooled images)`,
    '',
    `${g.fooled} of ${g.images} images fooled; ${g.dominant
      .slice(0, 3)
      .map(
        (d) => `"${d.name}" receives ${pct(d.share)} of them (the main destination of ${d.inDegree} label${d.inDegree === 1 ? '' : 's'})`,
      )
      .join(', ')}.`,
    '',
  );
  const b = r.baseline;
  const at = (kind: string) => b.points.find((pt) => pt.kind === kind && Math.abs(pt.radius - b.vNorm) < 1e-6)?.mean;
  lines.push(
    `## Universal vs random noise at the same L2 norm (${first}, ||v||_2 = ${b.vNorm.toFixed(0)}; paper, CaffeNet at 2000: universal ~85%, random ~10%)`,
    '',
    `universal ${pct(at('universal'))}; random Gaussian ${pct(at('gaussian'))}; random signs ${pct(at('random signs'))}; each image's own DeepFool perturbation ${pct(at('per-image DeepFool'))}; the sum of them ${pct(at('sum of DeepFool perturbations'))} (paper: per-image ~37%, sum ~41%).`,
    '',
  );
  const n = r.normals;
  lines.push(
    `## Random vectors from the DeepFool normals' subspace (${first}, ${n.normals} normals, L2 ${n.xi.toFixed(0)}; paper: top-100 subspace ~38% vs ~10% unconstrained)`,
    '',
    `${n.subspace.map((pt) => `top-${pt.d}: ${pct(pt.mean)}`).join('; ')}; unconstrained: ${pct(n.unconstrained.mean)}.`,
    '',
  );
  return lines.join('\n') + '\n';
}
