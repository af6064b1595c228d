import { Command } from 'commander';
import { packageVersion } from '../paths.js';
import { computeCommand, evaluateCommand, demoCommand, accuracyCommand } from './commands.js';
import { transferCommand, graphCommand, baselineCommand, sweepSizeCommand, normalsCommand, reportCommand } from './analyses.js';
import { reproduceCommand } from './reproduce.js';
import { finetuneCommand } from './defence.js';
import { studioCommand } from './studio.js';
import { exportCommand } from './export.js';
import { workerCommand } from './worker.js';
import { auditCommand } from './audit.js';

/**
 * The `uap` command line. Bad input (flags, files, cards) ends with a one-line message and exit
 * code 2; a stack trace is printed only for real bugs, or with UAP_DEBUG=1.
 */
export function program(): Command {
  const p = new Command('uap')
    .description(
      'Universal adversarial perturbations (Moosavi-Dezfooli et al., CVPR 2017) for image classifiers from PyTorch (ONNX), TensorFlow.js and TFLite',
    )
    .version(packageVersion(), '-V, --version', 'print the version (also -v)');
  for (const c of [
    computeCommand(),
    evaluateCommand(),
    accuracyCommand(),
    transferCommand(),
    graphCommand(),
    baselineCommand(),
    sweepSizeCommand(),
    normalsCommand(),
    reportCommand(),
    exportCommand(),
    reproduceCommand(),
    auditCommand(),
    finetuneCommand(),
    studioCommand(),
    workerCommand(),
    demoCommand(),
  ])
    p.addCommand(c);
  p.exitOverride();
  for (const c of p.commands) c.exitOverride();
  return p;
}
