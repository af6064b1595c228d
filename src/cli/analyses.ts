import { OPTIONS } from '../attacks/options.js';
import { dirname } from 'node:path';
import { Command, Option } from 'commander';
import type { Norm } from '../math/lp.js';
import { DEFAULT_FACTORS } from '../analysis/baseline.js';
import { DEFAULT_SIZES } from '../analysis/sizes.js';
import {
  addModelFlags,
  addDataFlags,
  addAttackFlags,
  attackOptions,
  dataSpec,
  cardOverrides,
  count,
  norm,
  positive,
  numberList,
  addFormatFlags,
  perturbationFormat,
  addPerturbationFlag,
  perturbationPath,
  type AttackFlags,
  ASSETS_HELP,
  BACKEND_HELP,
  MAX_BATCH,
} from './flags.js';
import { addJsonFlag, consoleLog, pct, printResult, startBackend } from './console.js';
import { pctCI } from '../report/format.js';
import type { Backend } from '../engine/backend.js';
import type { Method } from '../attacks/methods.js';
import { graphJob, baselineJob, type BaselineJob, type PerturbationAnalysisJob } from '../jobs/perturbationAnalyses.js';
import { transferJob } from '../jobs/transfer.js';
import { sweepSizeJob, normalsJob, type ModelAnalysisJob } from '../jobs/modelAnalyses.js';
import { reportJob } from '../jobs/report.js';
import { addQueueFlags, queueOption } from './worker.js';

/** The analysis commands: each maps its flags to a typed job (src/jobs), runs it, and prints what it found. */

export function transferCommand(): Command {
  const cmd = new Command('transfer')
    .description("transfer matrix: each perturbation (run directory, .npy or .npz) evaluated on each model (the paper's Table 2)")
    .argument('<sources...>', 'run directories of `uap compute` (their config.json names the model) or .npy / .npz perturbations');
  addFormatFlags(cmd)
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', BACKEND_HELP)
    .option('--models <names>', 'comma-separated models to test on (default: the models the runs were crafted on)')
    .option('-d, --data <dir>', "images to test on (default: each model's validation set)")
    .option('--limit <n>', 'use at most n images per model', count('limit'))
    .option(
      '--batch-size <n>',
      'images per forward pass (default 32, more for small models on ONNX Runtime)',
      count('batch-size', 1, MAX_BATCH),
    )
    .option('-o, --out <dir>', 'writes transfer.json, transfer.md, transfer.svg', 'runs/transfer');
  addJsonFlag(cmd, 'transfer.json');
  addQueueFlags(cmd).action(async (sources: string[], flags: Record<string, unknown>) => {
    const models = flags.models
      ? String(flags.models)
          .split(',')
          .map((m) => m.trim())
          .filter(Boolean)
      : undefined;
    const { markdown, files } = await transferJob(
      {
        backend: await startBackend(flags.backend),
        sources,
        format: perturbationFormat(flags),
        models,
        assets: flags.assets as string | undefined,
        data: flags.data as string | undefined,
        limit: flags.limit as number | undefined,
        batchSize: flags.batchSize as number | undefined,
        out: flags.out as string,
        queue: queueOption(flags),
      },
      { log: consoleLog },
    );
    printResult(flags, files[0], () => markdown + `written: ${files.join(', ')}\n`);
  });
  return cmd;
}

/** The options of an analysis of one perturbation (`uap graph`, `uap baseline`) from its flags. */
function analysisJob(flags: Record<string, unknown>, backend: Backend): PerturbationAnalysisJob {
  return {
    backend,
    run: flags.run as string | undefined,
    model: flags.model as string | undefined,
    perturbation: perturbationPath(flags, false, consoleLog.warn),
    format: perturbationFormat(flags),
    card: cardOverrides(flags),
    assets: flags.assets as string | undefined,
    data: flags.data as string | undefined,
    limit: flags.limit as number | undefined,
    out: flags.out as string | undefined,
    queue: queueOption(flags),
  };
}

/** --run / --perturbation / --data / --limit / --out of the analyses of one perturbation. */
function addRunFlags(cmd: Command, outputs: string): Command {
  cmd.option('--run <dir>', 'a `uap compute` run directory: its model and perturbation.npy (and the default --out)');
  addPerturbationFlag(cmd, 'perturbation to analyse (with --model; .npy or .npz, read with --layout / --units / --array)')
    .option('-d, --data <dir>', "images (default: the model's validation set)")
    .option('--limit <n>', "use at most n images (default with --run: the run's own validation images)", count('limit'))
    .option('-o, --out <dir>', `writes ${outputs} (default: the run directory, else runs/analysis)`);
  return addFormatFlags(cmd);
}

/** Prints what `uap baseline` found: each kind of perturbation at ||v||, and the files. */
export function printBaseline({ sweep, files }: Awaited<ReturnType<typeof baselineJob>>): void {
  const at1 = sweep.points.filter((pt) => Math.abs(pt.radius - sweep.vNorm) < 1e-9);
  process.stdout.write(
    `at ||v|| = ${sweep.vNorm.toFixed(1)}: ${at1.map((pt) => `${pt.kind} ${pct(pt.mean)}`).join(', ')}\nwritten: ${files.join(', ')}\n`,
  );
}

/** The options of `uap baseline` from its flags. */
function baselineOptions(flags: Record<string, unknown>, backend: Backend): BaselineJob {
  return {
    ...analysisJob(flags, backend),
    norm: flags.norm as Norm | undefined,
    factors: flags.factors as number[] | undefined,
    draws: flags.draws as number,
    deepfool: Boolean(flags.deepfool),
    onPoint: (pt) => consoleLog.info(`${pt.kind} at ${pt.radius.toFixed(1)}: ${pct(pt.mean)}`),
  };
}

export function baselineCommand(): Command {
  const cmd = new Command('baseline').description(
    'fooling rate against norm: the perturbation scaled vs random sign and Gaussian noise of the same norm (JSON, SVG)',
  );
  addModelFlags(cmd, 'fashion');
  addJsonFlag(addRunFlags(cmd, 'baseline.json, baseline.svg'), 'baseline.json')
    .addOption(new Option('-p, --norm <p>', "norm of the sweep: 2 or inf (default: the run's)").argParser(norm))
    .option(
      '--factors <list>',
      `radii as multiples of ||v|| (default ${DEFAULT_FACTORS.join(',')})`,
      numberList('factors', (f) => f >= 0, 'numbers >= 0', '0,0.5,1,2'),
    )
    .option('--draws <n>', 'random draws per radius', count('draws', 1, 1000), 3)
    .option(
      '--deepfool',
      "also each image's own DeepFool perturbation at each radius, and the sum of them (one DeepFool pass over the images)",
    );
  addQueueFlags(cmd).action(async (flags: Record<string, unknown>) => {
    const r = await baselineJob(baselineOptions(flags, await startBackend(flags.backend)), { log: consoleLog });
    if (flags.json) printResult(flags, r.files[0], () => '');
    else printBaseline(r);
  });
  return cmd;
}

/** The model, data and queue flags of sweep-size and normals as a job's options. */
function modelAnalysisJob(flags: Record<string, unknown>, backend: Backend): ModelAnalysisJob {
  return {
    backend,
    model: flags.model as string,
    card: cardOverrides(flags),
    assets: flags.assets as string | undefined,
    ...dataSpec(flags),
    out: flags.out as string,
    queue: queueOption(flags),
  };
}

/** Runs `uap sweep-size` from its flags and prints the points. */
async function sweepSize(flags: Record<string, unknown>): Promise<void> {
  const options = attackOptions(flags as unknown as AttackFlags);
  const { points, files, validationImages } = await sweepSizeJob(
    {
      ...modelAnalysisJob(flags, await startBackend(flags.backend)),
      seed: options.seed ?? OPTIONS.seed.default,
      method: flags.method as Method | undefined,
      options,
      target: flags.target as string | undefined,
      sizes: flags.sizes as number[] | undefined,
      seeds: flags.seeds as number,
      onCrafted: (r) =>
        consoleLog.info(
          `|X| = ${r.size}, seed ${r.seed}: crafted, X ${pct(r.xFoolingRate)}, ${r.passes} pass(es), ${r.seconds.toFixed(0)} s`,
        ),
      onRun: (r) =>
        consoleLog.info(
          `|X| = ${r.size}, seed ${r.seed}: validation ${pct(r.valFoolingRate)}, X ${pct(r.xFoolingRate)}, ${r.passes} pass(es), ${r.seconds.toFixed(0)} s`,
        ),
    },
    { log: consoleLog },
  );
  if (flags.json) return printResult(flags, files[0], () => '');
  process.stdout.write(
    points
      .map(
        (p) =>
          `|X| ${p.size}: ${pctCI(p.valFoolingRate, validationImages)} on validation${
            p.spread
              ? `; over ${p.spread.seeds} seeds sd ${(p.spread.sd * 100).toFixed(1)} points, range ${pct(p.spread.min)}-${pct(p.spread.max)}`
              : ''
          }`,
      )
      .join('\n') + `\nwritten: ${files.join(', ')}\n`,
  );
}

export function sweepSizeCommand(): Command {
  const cmd = new Command('sweep-size').description(
    'validation fooling rate against the size of X (nested seeded subsets, same method and settings; JSON, SVG)',
  );
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  addAttackFlags(cmd);
  cmd
    .option(
      '--sizes <list>',
      `sizes of X (default ${DEFAULT_SIZES.join(',')}, up to the images there are, and all of them)`,
      numberList('sizes', (n) => Number.isInteger(n) && n >= 1, 'integers >= 1', '50,100,500'),
    )
    .option(
      '--seeds <n>',
      'repeat the sweep with n seeds (each draws its own subsets of X and seeds the attack): each size gets the spread over seeds',
      count('seeds', 1, 100),
      1,
    )
    .option('-o, --out <dir>', 'writes sweep-size.json, sweep-size.svg', 'runs/sweep-size');
  addJsonFlag(cmd, 'sweep-size.json');
  addQueueFlags(cmd).action(async (flags: Record<string, unknown>) => {
    await sweepSize(flags);
  });
  return cmd;
}

/** Runs `uap normals` from its flags and prints the subspace fooling rates. */
async function normals(flags: Record<string, unknown>): Promise<void> {
  const r = await normalsJob(
    {
      ...modelAnalysisJob(flags, await startBackend(flags.backend)),
      xi: flags.xi as number | undefined,
      dims: flags.dims as number[] | undefined,
      draws: flags.draws as number,
      onProgress: (done, total) => consoleLog.info(`DeepFool normals: ${done}/${total}`),
    },
    { log: consoleLog },
  );
  if (flags.json) return printResult(flags, r.files[0], () => '');
  const n = r.normals;
  process.stdout.write(
    [
      `${n.normals} normals of ${n.images} images; random vectors of L2 ${r.xi.toFixed(0)} on ${r.validationImages} validation images:`,
      ...n.subspace.map((p) => `  from the top-${p.d} subspace: ${pct(p.mean)} (min ${pct(p.min)}, max ${pct(p.max)})`),
      `  unconstrained: ${pct(n.unconstrained.mean)}`,
      `written: ${r.files.join(', ')}`,
    ].join('\n') + '\n',
  );
}

export function normalsCommand(): Command {
  const cmd = new Command('normals').description(
    'DeepFool boundary normals: singular values vs random vectors, and fooling by random vectors from their top-d subspace (JSON, SVG)',
  );
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  cmd
    .option('--xi <x>', 'L2 norm of the random vectors, pixel units (default: 2000 at 224x224x3, scaled by sqrt(pixels))', positive('xi'))
    .option(
      '--dims <list>',
      'subspace dimensions d (default 1,10,50,100,200, up to the rank)',
      numberList('dims', (n) => Number.isInteger(n) && n >= 1, 'integers >= 1', '1,10,50'),
    )
    .option('--draws <n>', 'random vectors per d', count('draws', 1, 1000), 3)
    .option('-o, --out <dir>', 'writes normals.json, normals.svg', 'runs/normals');
  addJsonFlag(cmd, 'normals.json');
  addQueueFlags(cmd).action(async (flags: Record<string, unknown>) => {
    await normals(flags);
  });
  return cmd;
}

export function reportCommand(): Command {
  return new Command('report')
    .description('one self-contained HTML page (opens offline) for run directories of compute, of the analyses and of finetune')
    .argument('<dirs...>', 'run directories (uap compute --out, or the --out of transfer / graph / baseline / sweep-size / normals)')
    .option(
      '-o, --out <file>',
      'the HTML file (default: report.html in the run directory when one is given, else runs/report.html); its plots also go as SVG files to NAME-figures/ beside it',
    )
    .option('--title <text>', 'page title')
    .action(async (dirs: string[], flags: Record<string, unknown>) => {
      const { file, bytes, figures } = await reportJob({
        dirs,
        out: flags.out as string | undefined,
        title: flags.title as string | undefined,
      });
      process.stdout.write(
        `written: ${file} (${(bytes / 1e6).toFixed(1)} MB, self-contained)${figures.length ? `; its ${figures.length} plots as SVG in ${dirname(figures[0])}` : ''}\n`,
      );
    });
}

/** Prints what `uap graph` found: fooled images, components, dominant labels, and the files. */
export function printGraph({ graph: g, files }: Awaited<ReturnType<typeof graphJob>>): void {
  const top = g.dominant.slice(0, 5).map((d) => `${d.name.split(',')[0]} (${pct(d.share)} of fooled, in-degree ${d.inDegree})`);
  process.stdout.write(
    [
      `fooling graph: ${g.fooled} of ${g.images} images fooled; ${g.edges.length} labels lose images; ${g.components.length} connected component(s), largest ${g.components[0]?.length ?? 0} labels`,
      `dominant labels: ${top.join('; ') || '-'}`,
      `written: ${files.join(', ')}`,
    ].join('\n') + '\n',
  );
}

export function graphCommand(): Command {
  const cmd = new Command('graph').description(
    'fooling graph: where the fooled images of each label go; dominant labels; components (JSON, DOT, SVG)',
  );
  addModelFlags(cmd, 'fashion');
  addQueueFlags(addJsonFlag(addRunFlags(cmd, 'graph.json, graph.dot, graph.svg'), 'graph.json')).action(
    async (flags: Record<string, unknown>) => {
      const r = await graphJob(analysisJob(flags, await startBackend(flags.backend)), { log: consoleLog });
      if (flags.json) printResult(flags, r.files[0], () => '');
      else printGraph(r);
    },
  );
  return cmd;
}
