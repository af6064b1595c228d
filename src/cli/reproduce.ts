import { METHOD_NAMES, type Method } from '../attacks/methods.js';
import { ASSETS_HELP, BACKEND_HELP, positive, count } from './flags.js';
import { Command, Option } from 'commander';
import { reproduceJob, REPRODUCE_MODELS } from '../jobs/reproduce.js';
import { printGraph, printBaseline } from './analyses.js';
import { queueOption } from './worker.js';
import { consoleLog, startBackend, universalProgress } from './console.js';

/** `uap reproduce`: its flags as the typed job (src/jobs/reproduce.ts); prints the analyses and summary.md. */
export function reproduceCommand(): Command {
  return new Command('reproduce')
    .description(
      "the paper's experiments on the bundled models (fooling rates at L2 2000 / Linf 10, transfer, fooling graph, norm curve, size of X, normals), a report and a summary table beside the paper's numbers",
    )
    .addOption(
      new Option(
        '--method <m>',
        "crafting method: sgd (default: reaches the paper's regime with the 1000 bundled images) or algorithm1 (the paper's)",
      )
        .choices(METHOD_NAMES)
        .default('sgd'),
    )
    .option('--models <names>', `comma-separated models to craft on (default ${REPRODUCE_MODELS.join(',')})`)
    .option('--quick', 'a few minutes: 100 images of X, 300 validation images, fewer sizes and normals')
    .option(
      '--paper-scale',
      "the paper's counts on real images (with --models fashion): X = 10,000 Fashion-MNIST training images, validation = the 10,000 test images, |X| from 100 to 10,000 (Debian's dataset-fashion-mnist)",
    )
    .option('--max-passes <n>', 'pass cap per perturbation', count('max-passes'), 10)
    .option('--linf <xi>', "Linf radius in pixels [0,255] (default 10, the paper's)", positive('linf'))
    .option(
      '--l2 <xi>',
      "L2 radius in pixels (default the paper's 2000 at 224x224x3, scaled to keep the per-pixel RMS: 2000 * sqrt(pixels / 150528))",
      positive('l2'),
    )
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', BACKEND_HELP)
    .option('-o, --out <dir>', 'folder for the runs, report.html and summary.md', 'runs/reproduce')
    .option(
      '--queue <url>',
      "score (and craft SGD-UAP's steps, sweep points) on uap workers through this Redis (BullMQ) (default: $UAP_QUEUE; none: here)",
      process.env.UAP_QUEUE || undefined,
    )
    .option('--shard-size <n>', 'images per queued shard (rounded up to whole batches)', count('shard-size', 1, 65_536), 512)
    .option('--json', "print every run's and analysis's figures as one JSON document instead of the text (summary.md is still written)")
    .action(async (flags: Record<string, unknown>) => {
      const models = flags.models
        ? String(flags.models)
            .split(',')
            .map((m) => m.trim())
            .filter(Boolean)
        : undefined;
      const r = await reproduceJob(
        {
          backend: await startBackend(flags.backend),
          method: flags.method as Method,
          models,
          quick: Boolean(flags.quick),
          paperScale: Boolean(flags.paperScale),
          maxPasses: flags.maxPasses as number,
          linf: flags.linf as number | undefined,
          l2: flags.l2 as number | undefined,
          assets: flags.assets as string | undefined,
          out: flags.out as string,
          queue: queueOption(flags),
        },
        { log: consoleLog, progress: universalProgress },
      );
      if (flags.json) {
        // Everything the runs found, typed arrays (per-image labels) left out: they are in each run's folder.
        const plain = (_k: string, v: unknown) => (ArrayBuffer.isView(v) ? undefined : v);
        process.stdout.write(JSON.stringify({ ...r, summary: undefined }, plain) + '\n');
        return;
      }
      printGraph(r.graph);
      printBaseline(r.baseline);
      process.stdout.write(r.summary + `\nwritten: ${r.files.join(', ')}\n`);
    });
}
