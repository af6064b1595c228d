import { existsSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { assetsDir } from '../paths.js';
import { findCard } from '../import/load.js';
import { transferSource } from '../analysis/transfer.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { writeAtomic } from '../io/atomic.js';
import { encodeNpz, fromPixelsHwc, LAYOUTS, UNITS, type PerturbationLayout, type PerturbationUnits } from '../perturbation/file.js';
import { ASSETS_HELP } from './flags.js';
import type { ImageShape } from '../math/imageShape.js';

/** Three lines that apply an exported perturbation in PyTorch. */
export function pytorchSnippet(file: string, units: PerturbationUnits, layout: PerturbationLayout, array?: string): string {
  const apply =
    units === 'normalized'
      ? 'x_adv = x + v                      # x: images after transforms.Normalize'
      : units === 'unit'
        ? 'x_adv = (x + v).clamp(0, 1)        # x: images in [0, 1], before transforms.Normalize'
        : 'x_adv = (x + v).clamp(0, 255)      # x: images in [0, 255]';
  const shape = layout === 'chw' || layout === 'nchw' ? '' : `  # ${layout.toUpperCase()}: .permute to the model's order`;
  const load = `np.load(${JSON.stringify(file)})${array ? `[${JSON.stringify(array)}]` : ''}`;
  return [`import numpy as np, torch`, `v = torch.from_numpy(${load})${shape}`, apply].join('\n');
}

export function exportCommand(): Command {
  return new Command('export')
    .description("write a perturbation for other tools: PyTorch's CHW / NCHW layout, [0, 1] or normalised units, .npy or .npz")
    .argument('<source>', "a `uap compute` run directory, or a perturbation .npy of uap's (HWC, pixel units)")
    .addOption(new Option('--layout <l>', 'axis order').choices(LAYOUTS).default('chw'))
    .addOption(new Option('--units <u>', "value scale (normalized divides by the model's std)").choices(UNITS).default('unit'))
    .option('-m, --model <name|path>', "model whose normalisation --units normalized uses (default: the run's)")
    .option('--assets <dir>', ASSETS_HELP)
    .option('--array <name>', 'array name inside a .npz', 'perturbation')
    .option('-o, --out <file>', 'output .npy or .npz (default: beside the source, perturbation-LAYOUT-UNITS.npy)')
    .action((source: string, flags: { layout: string; units: string; model?: string; assets?: string; array: string; out?: string }) => {
      const layout = flags.layout as PerturbationLayout;
      const units = flags.units as PerturbationUnits;
      if (!existsSync(source)) throw new UsageError(`${source}: not found (expected a run directory or a .npy perturbation)`);
      const isRun = statSync(source).isDirectory();
      const src = isRun ? transferSource(source) : { file: source, craftedOn: null, card: undefined };
      const arr = readNpy(src.file);
      if (arr.shape.length !== 3) throw new UsageError(`${src.file}: shape (${arr.shape.join(', ')}); expected uap's HWC perturbation`);
      const modelSpec = flags.model ?? src.craftedOn;
      let preprocess;
      if (units === 'normalized') {
        if (!modelSpec)
          throw new UsageError(`--units normalized: name the model with --model (${source} does not say which it was made for)`);
        preprocess = findCard(modelSpec, src.card, assetsDir(flags.assets)).preprocess;
      }
      const out = fromPixelsHwc(arr.data, arr.shape as ImageShape, layout, units, preprocess, src.file);
      const file =
        flags.out ??
        join(isRun ? source : dirname(source), `${isRun ? 'perturbation' : basename(source, extname(source))}-${layout}-${units}.npy`);
      if (extname(file) === '.npz') writeAtomic(file, encodeNpz({ [flags.array]: out }));
      else if (extname(file) === '.npy') writeNpy(file, out);
      else throw new UsageError(`--out ${file}: expected a .npy or .npz file name`);
      process.stdout.write(
        `written: ${file} (${out.shape.join('x')}, ${layout}, ${units} units)\n\nIn PyTorch:\n${pytorchSnippet(file, units, layout, extname(file) === '.npz' ? flags.array : undefined)}\n`,
      );
    });
}
