import { OPTIONS } from '../attacks/options.js';
import type { Method } from '../attacks/methods.js';
import { Command, Option } from 'commander';
import {
  addModelFlags,
  addDataFlags,
  addAttackFlags,
  attackOptions,
  cardOverrides,
  dataSpec,
  count,
  number,
  positive,
  type AttackFlags,
  MAX_BATCH,
  embeddedRadius,
} from './flags.js';
import { consoleLog, pct, printResult, startBackend, trainingProgress, withInterrupt } from './console.js';
import { join } from 'node:path';
import { defenceMarkdown, FINETUNE_DEFAULTS } from '../defence/finetune.js';
import { finetuneJob } from '../jobs/finetune.js';
import { queueOption } from './worker.js';
import { defaultRunFolder, OUT_DEFAULT_HELP } from './runFolder.js';
import { UsageError } from '../errors.js';

function range(s: string): [number, number] {
  const m = /^\s*([\d.]+)\s*,\s*([\d.]+)\s*$/.exec(s);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || !Number.isFinite(lo) || !Number.isFinite(hi) || lo < 0 || hi < lo)
    throw new UsageError(`--magnitude ${s}: expected LO,HI with 0 <= LO <= HI, e.g. 0.5,1.5`);
  return [lo, hi];
}

export function finetuneCommand(): Command {
  const d = FINETUNE_DEFAULTS;
  const cmd = new Command('finetune').description(
    "harden a LayersModel: fine-tune it on images perturbed by a pool of universal perturbations (the paper's defence) or train it together with one (--defence uat), then attack it afresh; writes the model, its card and the rounds table",
  );
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  addAttackFlags(cmd, { method: 'sgd', maxPasses: 5 });
  cmd
    .addOption(
      new Option(
        '--defence <d>',
        'pool (the paper: fine-tune on a pool of precomputed UAPs) or uat (universal adversarial training, Shafahi et al. 2020: one UAP trained with the weights, an ascent step on it per descent step)',
      )
        .choices(['pool', 'uat'])
        .default(d.defence),
    )
    .option(
      '--uat-step <s>',
      "uat: the perturbation's ascent step per minibatch, pixels in the ball's norm (default xi/5)",
      positive('uat-step'),
    )
    .option('--rounds <n>', 'fine-tune / re-attack rounds', count('rounds'), d.rounds)
    .option('--pool-size <n>', 'universal perturbations precomputed per round', count('pool-size'), d.poolSize)
    .option('--epochs <n>', 'fine-tuning epochs per round', count('epochs'), d.epochs)
    .option(
      '--learning-rate <r>',
      'Adam learning rate (an epoch that costs too much clean accuracy is undone and retried at a tenth of it, twice at most)',
      positive('learning-rate'),
      d.learningRate,
    )
    .option('--train-batch-size <n>', 'images per training step', count('train-batch-size', 1, MAX_BATCH), d.batchSize)
    .option(
      '--perturb-probability <p>',
      'share of training images that get a pool member',
      number('perturb-probability', (n) => n >= 0 && n <= 1, 'a number in [0, 1]'),
      d.sampling.probability,
    )
    .addOption(
      new Option('--magnitude <lo,hi>', 'a perturbed image gets a pool member times a factor uniform in [lo, hi]')
        .argParser(range)
        .default(d.sampling.scale, d.sampling.scale.join(',')),
    )
    .option(
      '--max-accuracy-drop <f>',
      'undo an epoch after which clean validation accuracy is more than this below the original (0.05 = 5 points)',
      number('max-accuracy-drop', (n) => n >= 0 && n <= 1, 'a number in [0, 1]'),
      d.maxAccuracyDrop,
    )
    .addOption(
      new Option(
        '--train-labels <l>',
        "train towards the model's own clean labels (invariance; right for small sets) or the data's true labels",
      )
        .choices(['model', 'truth'])
        .default(d.trainLabels),
    )
    .option('-o, --out <dir>', `run directory: rounds, pools, models, defence.json, defence.md (${OUT_DEFAULT_HELP})`)
    .option('--resume', 'continue the interrupted run in --out (finished stages are kept; training restarts from the last saved epoch)')
    .option(
      '--queue <url>',
      "craft each round's pool members on uap workers through this Redis (BullMQ), all at once (default: $UAP_QUEUE; none: here)",
      process.env.UAP_QUEUE || undefined,
    )
    .option('--json', 'print the figures as JSON (the defence.json it writes) instead of text')
    .action(async (flags: Record<string, unknown>) => {
      embeddedRadius(cmd, flags);
      flags.out ??= defaultRunFolder('finetune', Boolean(flags.resume));
      consoleLog.info(`run folder: ${flags.out as string}`);
      const queue = queueOption(flags);
      const backend = await startBackend(flags.backend);
      const progress = trainingProgress();
      try {
        const { result: res, files } = await withInterrupt('interrupted: stopping after this step; continue with --resume', (signal) =>
          finetuneJob(
            {
              model: flags.model as string,
              card: cardOverrides(flags),
              assets: flags.assets as string | undefined,
              backend,
              out: flags.out as string,
              ...dataSpec(flags),
              method: flags.method as Method,
              attack: attackOptions(flags as unknown as AttackFlags),
              options: {
                defence: flags.defence as 'pool' | 'uat',
                uatStep: flags.uatStep as number | undefined,
                rounds: flags.rounds as number,
                poolSize: flags.poolSize as number,
                epochs: flags.epochs as number,
                learningRate: flags.learningRate as number,
                batchSize: flags.trainBatchSize as number,
                maxAccuracyDrop: flags.maxAccuracyDrop as number,
                seed: (flags.seed as number | undefined) ?? OPTIONS.seed.default,
                trainLabels: flags.trainLabels as 'model' | 'truth',
                sampling: { probability: flags.perturbProbability as number, scale: flags.magnitude as [number, number] },
              },
              resume: Boolean(flags.resume),
              queue,
            },
            {
              log: consoleLog,
              onBatch: progress.onBatch,
              onEpoch: (r, e) =>
                consoleLog.info(
                  `round ${r}, epoch ${e.epoch} (lr ${e.learningRate.toExponential(0)}): loss ${e.loss.toFixed(3)}, clean accuracy ${pct(e.cleanAccuracy)}, pool fools ${pct(e.poolFoolingRate)} of the validation images${e.kept ? '' : ' (undone)'}, ${e.seconds.toFixed(0)} s`,
                ),
              signal,
            },
          ),
        );
        printResult(
          flags,
          files.find((f) => f.endsWith('defence.json')) ?? join(flags.out as string, 'defence.json'),
          () => defenceMarkdown(res) + `fine-tuned model: ${res.rounds[res.rounds.length - 1].card}\nwritten: ${files.join(', ')}\n`,
        );
      } finally {
        progress.stop();
      }
    });
  return cmd;
}
