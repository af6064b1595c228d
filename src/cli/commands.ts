import { OPTIONS } from '../attacks/options.js';
import type { Method } from '../attacks/methods.js';
import { Command } from 'commander';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { computeJob, type ComputeSummary } from '../jobs/compute.js';
import { evaluateJob, accuracyJob } from '../jobs/scoring.js';
import { reportJob } from '../jobs/report.js';
import { assetsDir, assetsHint } from '../paths.js';
import { UsageError } from '../errors.js';
import {
  addModelFlags,
  addDataFlags,
  addAttackFlags,
  addScoringFlags,
  attackOptions,
  dataSpec,
  cardOverrides,
  scoringJob,
  count,
  addFormatFlags,
  perturbationFormat,
  addPerturbationFlag,
  perturbationPath,
  type AttackFlags,
  ASSETS_HELP,
  BACKEND_HELP,
  embeddedRadius,
} from './flags.js';
import { consoleLog, pct, scoringProgress, startBackend, universalProgress, withInterrupt } from './console.js';
import { printGraph, printBaseline } from './analyses.js';
import { graphJob, baselineJob } from '../jobs/perturbationAnalyses.js';
import type { Backend } from '../engine/backend.js';
import { addQueueFlags, queueOption } from './worker.js';
import { defaultRunFolder, OUT_DEFAULT_HELP } from './runFolder.js';
import { methodName, pctCI } from '../report/format.js';
import { runWarnings } from '../report/warnings.js';

/** Runs a compute job with a progress bar; Ctrl-C stops after the current batch, keeping the checkpoint. */
async function computeWithProgress(
  backend: Backend,
  flags: Record<string, unknown>,
  out: string,
  extra: { model?: string; randomDraws?: number; force?: boolean } = {},
): Promise<ComputeSummary> {
  const progress = universalProgress();
  const scoring = scoringProgress('validation');
  try {
    return await withInterrupt('interrupted: stopping after this batch; resume with --resume', (signal) =>
      computeJob(
        {
          model: extra.model ?? (flags.model as string),
          card: cardOverrides(flags),
          assets: flags.assets as string | undefined,
          backend,
          out,
          ...dataSpec(flags),
          options: attackOptions(flags as unknown as AttackFlags),
          resume: Boolean(flags.resume),
          force: extra.force ?? Boolean(flags.force),
          init: flags.init as string | undefined,
          initFormat: perturbationFormat(flags),
          method: flags.method as Method | undefined,
          target: flags.target as string | undefined,
          classes: flags.classes as string[] | undefined,
          randomDraws: extra.randomDraws,
          valPerPass: Boolean(flags.valPerPass),
          queue: queueOption(flags),
        },
        { log: consoleLog, onProgress: progress.onProgress, onPass: progress.onPass, onScore: scoring.onScore, signal },
      ),
    );
  } finally {
    progress.stop();
    scoring.stop();
  }
}

function printSummary(s: ComputeSummary): void {
  const r = s.randomOnVal;
  const lines = [
    `model ${s.config.model}, ${methodName(s.config)}, ${s.config.norm === 2 ? 'L2' : 'Linf'} xi=${s.config.xi}, ${s.result.passes} pass(es), ${s.result.seconds.toFixed(0)} s`,
    `fooling rate on X (${s.onX.images} images): ${pctCI(s.onX.foolingRate, s.onX.images)}`,
  ];
  if (s.config.targetName !== null && s.config.targetName !== undefined)
    lines.push(
      `targeted at "${String(s.config.targetName)}": success on X ${pct(s.result.targetSuccess)}${s.targetOnVal !== undefined ? `, on validation ${pct(s.targetOnVal)}` : ''} (images not already of that class)`,
    );
  const attacked = s.config.classes as number[] | undefined;
  if (attacked) {
    const last = s.result.history[s.result.history.length - 1];
    lines.push(
      `class-discriminative on ${attacked.length} class(es): their images fooled ${pct(last?.attackedFoolingRate)} in X${s.classesOnVal ? `, ${pct(s.classesOnVal.attacked)} in validation` : ''}; the other classes keep their label on ${pct(last?.keptRate)} of X${s.classesOnVal ? `, ${pct(s.classesOnVal.kept)} of validation` : ''}`,
    );
  }
  if (s.onVal) {
    lines.push(`fooling rate on validation (${s.onVal.images} images): ${pctCI(s.onVal.foolingRate, s.onVal.images)}`);
    if (s.onVal.cleanAccuracy !== undefined)
      lines.push(
        `accuracy clean ${pct(s.onVal.cleanAccuracy)} -> perturbed ${pct(s.onVal.perturbedAccuracy)}; fooling rate among correctly classified ${pct(s.onVal.foolingRateOnCorrect, 'n/a (none is)')}`,
      );
  }
  if (r)
    for (const b of [r.sameLp, r.sameL2])
      lines.push(
        `random noise, ${b.norm === 2 ? 'L2' : 'Linf'} ${b.radius.toFixed(b.norm === 2 ? 0 : 1)} (as v), on validation: ${pct(b.mean)} (min ${pct(b.min)}, max ${pct(b.max)}, ${b.draws} draws)`,
      );
  lines.push(
    `written: ${['perturbation.npy', 'perturbation.png', 'examples.png', 'metrics.json', 'config.json', ...(s.onVal ? ['predictions.csv'] : [])].map((f) => join(s.out, f)).join(', ')}`,
  );
  process.stdout.write(lines.join('\n') + '\n');
  // A class-discriminative v is meant to leave most images alone: beside noise, its overall rate says nothing.
  for (const w of runWarnings(attacked ? { ...s, randomOnVal: null } : s)) consoleLog.warn(w);
}

export function computeCommand(): Command {
  const cmd = new Command('compute').description(
    'compute a universal perturbation (Algorithm 1, or SGD-UAP with --method sgd; targeted with --target) and evaluate it',
  );
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  addAttackFlags(cmd);
  cmd
    .option('-o, --out <dir>', `run directory: perturbation, pictures, metrics, checkpoint (${OUT_DEFAULT_HELP})`)
    .option('--resume', 'continue the interrupted run in --out from its last checkpoint')
    .option('--force', 'start afresh in an --out that holds an unfinished run, replacing it')
    .option('--init <file>', 'start from a saved perturbation, .npy or .npz (warm start; read with --layout / --units / --array)')
    .option('--val-per-pass', 'also score the validation set after every pass (X and validation curves in the report)')
    .option('--json', "print the run's figures as JSON (its metrics.json) instead of text")
    .option(
      '--classes <list>',
      'class-discriminative (CD-UAP, with --method sgd): fool only the images of these classes (comma-separated indices or first label names); the other classes keep their labels',
      (s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
    );
  addQueueFlags(addFormatFlags(cmd)).action(async (flags: Record<string, unknown>) => {
    embeddedRadius(cmd, flags);
    const out = (flags.out as string | undefined) ?? defaultRunFolder('compute', Boolean(flags.resume));
    consoleLog.info(`run folder: ${out}`);
    const summary = await computeWithProgress(await startBackend(flags.backend), flags, out);
    if (flags.json) process.stdout.write(readFileSync(join(summary.out, 'metrics.json'), 'utf8').trim() + '\n');
    else printSummary(summary);
  });
  return cmd;
}

export function evaluateCommand(): Command {
  const cmd = new Command('evaluate').description(
    "fooling rate and accuracy of a saved perturbation (.npy or .npz; uap's own, PyTorch's, ART's: see --layout, --units)",
  );
  addModelFlags(cmd, 'fashion');
  addPerturbationFlag(cmd, "perturbation to evaluate, required (.npy or .npz: ours, the paper authors', PyTorch's or ART's)");
  addFormatFlags(cmd);
  addQueueFlags(addScoringFlags(cmd, 'images to evaluate on'))
    .option('-o, --out <dir>', 'also write metrics.json and examples.png here')
    .option('--json', 'print the figures as JSON (those metrics.json holds) instead of text')
    .action(async (flags: Record<string, unknown>) => {
      const queue = queueOption(flags);
      const backend = await startBackend(flags.backend);
      const progress = scoringProgress('scoring');
      const m = await evaluateJob(
        {
          ...scoringJob(flags, backend),
          perturbation: perturbationPath(flags, true, consoleLog.warn)!,
          format: perturbationFormat(flags),
          out: flags.out as string | undefined,
          queue,
        },
        { log: consoleLog, onScore: progress.onScore },
      ).finally(() => progress.stop());
      if (flags.json) return void process.stdout.write(`${JSON.stringify(m)}\n`);
      const lines = [
        `model ${m.model}: ${m.images} images from ${m.folder}; ||v||_2 ${m.normL2.toFixed(1)}, ||v||_inf ${m.normInf.toFixed(2)}`,
        `fooling rate: ${pctCI(m.foolingRate, m.images)}`,
        ...(m.cleanAccuracy !== undefined
          ? [
              `accuracy clean ${pct(m.cleanAccuracy)} -> perturbed ${pct(m.perturbedAccuracy)}; fooling rate among correctly classified ${pct(m.foolingRateOnCorrect, 'n/a (none is)')}`,
            ]
          : []),
        `random noise, same Linf: ${pct(m.randomSameLinf.mean)}; same L2: ${pct(m.randomSameL2.mean)} (${m.randomSameL2.draws} draws each)`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
  return cmd;
}

export function demoCommand(): Command {
  const cmd = new Command('demo').description(
    'compute and evaluate a UAP on the embedded Fashion-MNIST model (or --imagenet: MobileNet on ImageNet images)',
  );
  addAttackFlags(cmd);
  cmd
    .option('--imagenet', 'use the ImageNet MobileNet v1 0.25 and the shared ImageNet images instead')
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', BACKEND_HELP)
    .option('--limit <n>', 'images of X', count('limit'))
    .option('--val-limit <n>', 'validation images', count('val-limit'))
    .option('-o, --out <dir>', 'run directory')
    .action(async (flags: Record<string, unknown>) => {
      const imagenet = Boolean(flags.imagenet);
      if (imagenet && !existsSync(assetsDir(flags.assets as string | undefined)))
        throw new UsageError(
          `--imagenet needs the shared assets folder (${assetsHint(assetsDir(flags.assets as string | undefined))}): pass --assets DIR or set UAP_ASSETS to the folder holding models/ and data/`,
        );
      const backend = await startBackend(flags.backend);
      // Demo defaults sized for a couple of minutes on 2 cores; every flag can override them.
      const fill = (k: string, v: unknown) => {
        if (cmd.getOptionValueSource(k) !== 'cli') flags[k] = v;
      };
      if (imagenet) {
        // All 1000 sample images; the default Algorithm 1 fools 80% of them in one pass (cap: 3).
        fill('maxPasses', 3);
      } else {
        if ((flags.norm ?? OPTIONS.norm.default) === 'inf') fill('xi', 40);
        fill('maxPasses', 10);
      }
      const out = (flags.out as string | undefined) ?? (imagenet ? 'runs/demo-imagenet' : 'runs/demo');
      // The demo always starts afresh (a demo killed earlier leaves nothing worth resuming).
      printSummary(
        await computeWithProgress(backend, flags, out, {
          model: imagenet ? 'mobilenet_v1_0.25_224' : 'fashion',
          randomDraws: 3,
          force: true,
        }),
      );
      // The analyses of the run and one HTML page with everything.
      const analysis = { backend, run: out, assets: flags.assets as string | undefined };
      printGraph(await graphJob(analysis, { log: consoleLog }));
      printBaseline(await baselineJob({ ...analysis, draws: 2 }, { log: consoleLog }));
      const { file } = await reportJob({
        dirs: [out],
        title: `uap demo: ${imagenet ? 'MobileNet v1 0.25 on ImageNet' : 'the embedded Fashion-MNIST model'}`,
      });
      process.stdout.write(`report: ${file} (open it in a browser)\n`);
    });
  return cmd;
}

export function accuracyCommand(): Command {
  const cmd = new Command('accuracy').description(
    "top-1 / top-5 accuracy of a model on labelled images (checks its card's preprocessing and label mapping)",
  );
  addModelFlags(cmd, 'fashion');
  addQueueFlags(addScoringFlags(cmd, 'labelled images'))
    .option('--json', 'print the result as JSON')
    .action(async (flags: Record<string, unknown>) => {
      const queue = queueOption(flags);
      const backend = await startBackend(flags.backend);
      const r = await accuracyJob({ ...scoringJob(flags, backend), queue }, { log: consoleLog });
      process.stdout.write(
        flags.json
          ? JSON.stringify(r) + '\n'
          : `model ${r.model}: top-1 ${pct(r.top1)}, top-5 ${pct(r.top5)} on ${r.images} images from ${r.folder}\n`,
      );
    });
  return cmd;
}
