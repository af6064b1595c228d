import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { initBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import { assetsDir } from '../paths.js';
import { loadModel, loadPerturbation, loadSet, defaultData } from '../pipeline.js';
import { predictSet } from '../analysis/fooling.js';
import { foolingGraph, graphToDot, dotToSvg } from '../analysis/graph.js';
import { transferMatrix, transferSource, transferMarkdown, transferSpec } from '../analysis/transfer.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { labelName } from '../model/classifier.js';
import { writeJson } from '../io/run.js';
import { addModelFlags, cardOverrides, count } from './flags.js';
import { consoleLog } from './console.js';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

async function backend(flag: unknown): Promise<void> {
  consoleLog.info(`backend: ${await initBackend(flag as string | undefined)}`);
}

function write(file: string, text: string): void {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
}

export function transferCommand(): Command {
  const cmd = new Command('transfer')
    .description("transfer matrix: each perturbation (run directory or .npy) evaluated on each model (the paper's Table 2)")
    .argument('<sources...>', 'run directories of `uap compute` (their config.json names the model) or .npy perturbations');
  cmd
    .option('--assets <dir>', 'folder of the shared ImageNet models and images (default: $UAP_ASSETS or ../shared/assets)')
    .option('--backend <name>', 'where models run: onnx (default when its self-check passes), wasm or cpu')
    .option('--models <names>', 'comma-separated models to test on (default: the models the runs were crafted on)')
    .option('-d, --data <dir>', "images to test on (default: each model's validation set)")
    .option('--limit <n>', 'use at most n images per model', count('limit'))
    .option('--batch-size <n>', 'images per forward pass', count('batch-size'), 32)
    .option('-o, --out <dir>', 'writes transfer.json, transfer.md, transfer.svg', 'runs/transfer')
    .action(async (sources: string[], flags: Record<string, unknown>) => {
      const rows = sources.map(transferSource);
      const models = flags.models
        ? String(flags.models).split(',').map((s) => s.trim()).filter(Boolean)
        : [...new Set(rows.map((r) => r.craftedOn).filter((m): m is string => m !== null))];
      await backend(flags.backend);
      const t = await transferMatrix(rows, models, {
        assets: assetsDir(flags.assets as string | undefined), data: flags.data as string | undefined,
        limit: flags.limit as number | undefined, batchSize: flags.batchSize as number, log: consoleLog,
      });
      const out = flags.out as string;
      writeJson(join(out, 'transfer.json'), t);
      write(join(out, 'transfer.md'), transferMarkdown(t));
      write(join(out, 'transfer.svg'), await vegaLiteToSvg(transferSpec(t)));
      process.stdout.write(transferMarkdown(t) + `written: ${['transfer.json', 'transfer.md', 'transfer.svg'].map((f) => join(out, f)).join(', ')}\n`);
    });
  return cmd;
}

export function graphCommand(): Command {
  const cmd = new Command('graph').description('fooling graph: where the fooled images of each label go; dominant labels; components (JSON, DOT, SVG)');
  addModelFlags(cmd, 'fashion');
  cmd
    .option('--run <dir>', 'a `uap compute` run directory: its model and perturbation.npy (and the default --out)')
    .option('-v, --perturbation <file.npy>', 'perturbation to analyse (with --model)')
    .option('-d, --data <dir>', "images (default: the model's validation set)")
    .option('--limit <n>', 'use at most n images', count('limit'))
    .option('-o, --out <dir>', 'writes graph.json, graph.dot, graph.svg (default: the run directory, else runs/graph)')
    .action(async (flags: Record<string, unknown>) => {
      let modelName = flags.model as string;
      let file = flags.perturbation as string | undefined;
      const run = flags.run as string | undefined;
      if (run) {
        const src = transferSource(run);
        if (!src.craftedOn) throw new UsageError(`--run ${run}: config.json does not name the model`);
        modelName = src.craftedOn;
        file = src.file;
      }
      if (!file) throw new UsageError('graph: give --run DIR, or --model with -v perturbation.npy');
      if (!existsSync(file)) throw new UsageError(`-v ${file}: file not found`);
      await backend(flags.backend);
      const assets = assetsDir(flags.assets as string | undefined);
      const model = await loadModel(modelName, { assets, card: cardOverrides(flags) }, consoleLog);
      try {
        const dir = (flags.data as string | undefined) ?? defaultData(model, assets).val;
        const set = await loadSet(model, dir, { limit: flags.limit as number | undefined, assets, log: consoleLog, what: 'images' });
        const v = loadPerturbation(file, model, consoleLog);
        const clean = await predictSet(model, set, null);
        const adv = await predictSet(model, set, v).finally(() => v.dispose());
        const name = (i: number) => labelName(model, i);
        const g = foolingGraph(clean, adv, name);
        const out = (flags.out as string | undefined) ?? run ?? 'runs/graph';
        const dot = graphToDot(g, name);
        writeJson(join(out, 'graph.json'), { model: model.name, perturbation: file, data: dir, ...g });
        write(join(out, 'graph.dot'), dot);
        write(join(out, 'graph.svg'), await dotToSvg(dot));
        const top = g.dominant.slice(0, 5).map((d) => `${d.name.split(',')[0]} (${pct(d.share)} of fooled, in-degree ${d.inDegree})`);
        process.stdout.write(
          [
            `${g.fooled} of ${g.images} images fooled; ${g.edges.length} labels lose images; ${g.components.length} connected component(s), largest ${g.components[0]?.length ?? 0} labels`,
            `dominant labels: ${top.join('; ') || '-'}`,
            `written: ${['graph.json', 'graph.dot', 'graph.svg'].map((f) => join(out, f)).join(', ')}`,
          ].join('\n') + '\n',
        );
      } finally {
        model.dispose();
      }
    });
  return cmd;
}

