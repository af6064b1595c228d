import { Command } from 'commander';
import { AUDIT_METHODS, AUTHORS_KEY, auditJob, auditLines, type AuditBudget } from '../jobs/audit.js';
import { budgetName } from '../jobs/auditFormats.js';
import { parseNorm } from '../math/lp.js';
import { UsageError } from '../errors.js';
import { addDataFlags, addModelFlags, cardOverrides, count, dataSpec } from './flags.js';
import { addQueueFlags, queueOption } from './worker.js';
import { defaultRunFolder } from './runFolder.js';
import { consoleLog, pct, printResult, startBackend, universalProgress } from './console.js';

/** "10m", "90s", "1h", "600": seconds. */
export function parseDuration(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$/i.exec(s);
  const n = m ? Number(m[1]) * ({ s: 1, m: 60, min: 60, h: 3600 }[(m[2] ?? 's').toLowerCase() as 's'] ?? 1) : NaN;
  if (!(n > 0) || n > 7 * 24 * 3600) throw new UsageError(`--budget ${s}: expected a time such as 90s, 10m or 1h (up to a week)`);
  return n;
}

/** "inf:10,2:2000": norm budgets, each a norm (2 or inf) and a radius in pixels. */
export function parseBudgets(s: string): AuditBudget[] {
  return s.split(',').map((part) => {
    const [p, x] = part.split(':').map((t) => t.trim());
    const norm = parseNorm(p ?? '');
    const xi = Number(x);
    if (norm === undefined || !(xi > 0) || !Number.isFinite(xi))
      throw new UsageError(`--norms ${s}: "${part}" is not NORM:RADIUS with NORM 2 or inf and a radius > 0 in pixels, e.g. inf:10,2:2000`);
    return { norm, xi };
  });
}

/** "50%" or "0.5": a rate in [0, 1]. */
export function parseRate(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(%)?\s*$/.exec(s);
  const r = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
  if (!(r >= 0 && r <= 1)) throw new UsageError(`--fail-above ${s}: expected a rate such as 50% or 0.5`);
  return r;
}

/** `uap audit`: the release check for universal perturbations (src/jobs/audit.ts). */
export function auditCommand(): Command {
  const cmd = new Command('audit').description(
    'how vulnerable a model is to universal perturbations: the strongest methods at each norm budget, crafted on --data and scored on the held-out --val beside noise (a --data folder alone is split in two); audit.json, JUnit XML, a model-card section and a report; exit 1 above --fail-above or on a regression',
  );
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  cmd
    .option('--budget <time>', 'wall-clock budget it plans for (crafting gets 3/4, split over the runs): 90s, 10m, 1h', parseDuration, 600)
    .option(
      '--norms <list>',
      "norm budgets NORM:RADIUS in pixels (default: the paper's inf:10 and L2 2000 at 224x224x3 scaled to the input; the embedded model 4x)",
      parseBudgets,
    )
    .option('--fail-above <rate>', 'fail (exit code 1) when a worst-case held-out fooling rate is above this, e.g. 50%', parseRate)
    .option(
      '--methods <list>',
      `methods to run (default all): ${[...AUDIT_METHODS.map((m) => m.key), AUTHORS_KEY].join(',')} (authors: the paper's own perturbations, 224x224x3 models)`,
      (s: string) => s.split(',').map((x) => x.trim()),
    )
    .option(
      '--compare <audit.json>',
      "an earlier release's audit.json: a worse worst case (95% intervals apart) is a regression (exit code 1)",
    )
    .option(
      '--max-passes <n>',
      'passes per crafting run instead of the clock: the same audit digit for digit on any machine (with --budget alone, runs stop on time)',
      count('max-passes', 1, 100_000),
    )
    .option('--seed <n>', 'seed of every run', count('seed', 0), 0)
    .option('-o, --out <dir>', 'folder for audit.json, audit.xml, audit.md, report.html and the runs (default: a new runs/audit-DATE-TIME)')
    .option('--json', 'print audit.json instead of text');
  addQueueFlags(cmd).action(async (flags: Record<string, unknown>) => {
    flags.out ??= defaultRunFolder('audit', false);
    consoleLog.info(`audit folder: ${flags.out as string}`);
    const progress = universalProgress();
    const started = Date.now();
    const budget = flags.budget as number;
    try {
      const { audit, files } = await auditJob(
        {
          backend: await startBackend(flags.backend),
          model: flags.model as string,
          card: cardOverrides(flags),
          assets: flags.assets as string | undefined,
          ...dataSpec(flags),
          budgets: flags.norms as AuditBudget[] | undefined,
          seconds: budget,
          failAbove: flags.failAbove as number | undefined,
          methods: flags.methods as string[] | undefined,
          compare: flags.compare as string | undefined,
          seed: flags.seed as number,
          maxPasses: flags.maxPasses as number | undefined,
          out: flags.out as string,
          queue: queueOption(flags),
        },
        {
          log: consoleLog,
          onProgress: progress.onProgress,
          onRun: (r, b) => {
            progress.stop();
            const left = Math.max(0, budget - (Date.now() - started) / 1000);
            consoleLog.info(
              `${budgetName(b)}, ${r.method}: ${pct(r.heldOutFoolingRate)} of ${r.heldOutImages} held-out images fooled (random noise ${r.noiseFoolingRate === null ? '-' : pct(r.noiseFoolingRate)}); about ${Math.round(left)} s of the budget left`,
            );
          },
        },
      );
      printResult(flags, files[0], () =>
        [
          ...auditLines(audit),
          ...(audit.compare
            ? audit.compare.budgets.map(
                (c) => `vs ${audit.compare!.against}, ${budgetName(c)}: ${pct(c.before.rate)} -> ${pct(c.after.rate)} (${c.change})`,
              )
            : []),
          `verdict: ${audit.verdict}${audit.compare?.regression ? ', and a regression' : ''}`,
          `written: ${files.join(', ')}`,
          '',
        ].join('\n'),
      );
      if (audit.verdict === 'fail' || audit.compare?.regression) process.exitCode = 1;
    } finally {
      progress.stop();
    }
  });
  return cmd;
}
