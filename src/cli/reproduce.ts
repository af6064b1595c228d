import { METHOD_NAMES, type Method } from '../attacks/methods.js';
import { ASSETS_HELP, positive, count } from './flags.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { assetsDir, assetsHint } from '../paths.js';
import { runCompute, type ComputeSummary } from '../pipeline.js';
import { transferMatrix, transferSource, transferMarkdown, transferSpec } from '../analysis/transfer.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { buildReport } from '../report/html.js';
import { writeJson, writeText } from '../io/run.js';
import { printGraph, printBaseline, runSweepSize, runNormals, transferRemote } from './analyses.js';
import { graphJob, baselineJob } from '../jobs/perturbationAnalyses.js';
import { queueOption } from './worker.js';
import { consoleLog, pct, startBackend, universalProgress } from './console.js';

/**
 * `uap reproduce`: the paper's experiments on the bundled models and images, with its settings scaled
 * to what the bundle holds (X = the 1000 sample images instead of 10,000; validation = the 1300
 * images instead of 50,000), then the report and a Markdown summary beside the paper's numbers.
 */

const IMAGENET = ['mobilenet_v1_0.25_224', 'mobilenet_v2_1.0_224_quant', 'darknet_tiny'];
const EXTRA_COLUMNS = ['tf2_mobilenet_v2_1.0_224_ptq', 'mobilenet_v1_0.25_128_quant'];

interface Plan {
  models: string[];
  /** Extra models that only serve as transfer columns. */
  columns: string[];
  limit?: number;
  valLimit?: number;
  sizes: string;
  normals: number;
  /** --paper-scale: Fashion-MNIST in the paper's counts (X sampled from the training images, the test images as validation). */
  data?: string;
  val?: string;
  sample?: number;
  /** Validation images as a seeded sample (the first files of class folders would be one or two classes). */
  valSample?: number;
  /** Radii given by --l2 / --linf (else the paper's, L2 scaled to the input size). */
  l2?: number;
  linf?: number;
}

export function reproduceCommand(): Command {
  return new Command('reproduce')
    .description("the paper's experiments on the bundled models (fooling rates at L2 2000 / Linf 10, transfer, fooling graph, norm curve, size of X, normals), a report and a summary table beside the paper's numbers")
    .addOption(new Option('--method <m>', 'crafting method: sgd (default: reaches the paper\'s regime with the 1000 bundled images) or algorithm1 (the paper\'s)').choices(METHOD_NAMES).default('sgd'))
    .option('--models <names>', `comma-separated models to craft on (default ${IMAGENET.join(',')})`)
    .option('--quick', 'a few minutes: 100 images of X, 300 validation images, fewer sizes and normals')
    .option('--paper-scale', "the paper's counts on real images (with --models fashion): X = 10,000 Fashion-MNIST training images, validation = the 10,000 test images, |X| from 100 to 10,000 (Debian's dataset-fashion-mnist)")
    .option('--max-passes <n>', 'pass cap per perturbation', count('max-passes'), 10)
    .option('--linf <xi>', 'Linf radius in pixels [0,255] (default 10, the paper\'s)', positive('linf'))
    .option('--l2 <xi>', "L2 radius in pixels (default the paper's 2000 at 224x224x3, scaled to keep the per-pixel RMS: 2000 * sqrt(pixels / 150528))", positive('l2'))
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', 'where models run: onnx (default when its self-check passes), wasm or cpu')
    .option('-o, --out <dir>', 'folder for the runs, report.html and summary.md', 'runs/reproduce')
    .option('--queue <url>', 'score (and craft SGD-UAP\'s steps, sweep points) on uap workers through this Redis (BullMQ) (default: $UAP_QUEUE; none: here)', process.env.UAP_QUEUE || undefined)
    .option('--shard-size <n>', 'images per queued shard (rounded up to whole batches)', count('shard-size'), 512)
    .action(async (flags: Record<string, unknown>) => {
      const assets = assetsDir(flags.assets as string | undefined);
      const queue = queueOption(flags);
      const models = flags.models ? String(flags.models).split(',').map((m) => m.trim()).filter(Boolean) : IMAGENET;
      if (models.some((m) => m !== 'fashion') && !existsSync(assets))
        throw new UsageError(`reproduce: the ImageNet models need the shared assets folder (${assetsHint(assets)}): pass --assets DIR or set UAP_ASSETS`);
      const quick = Boolean(flags.quick);
      const paper = Boolean(flags.paperScale);
      if (paper && models.some((m) => m !== 'fashion')) throw new UsageError('--paper-scale: only the embedded Fashion-MNIST model has real images in the paper\'s counts here (use --models fashion)');
      const plan: Plan = {
        models,
        columns: flags.models ? [] : EXTRA_COLUMNS,
        limit: quick && !paper ? 100 : undefined,
        valLimit: quick && !paper ? 300 : undefined,
        sizes: paper ? (quick ? '100,1000' : '100,500,1000,2000,5000,10000') : quick ? '25,50,100' : '100,250,500,1000',
        normals: quick ? 50 : 200,
        l2: flags.l2 as number | undefined,
        linf: flags.linf as number | undefined,
        ...(paper ? { data: 'fashion:train', val: 'fashion:test', sample: quick ? 1000 : 10000, valSample: quick ? 2000 : undefined } : {}),
      };
      const engine = await startBackend(flags.backend);
      const out = flags.out as string;
      const method = flags.method as Method;
      // Every step below runs on the queue's workers as its own command would with --queue.
      const common = { assets: flags.assets, backend: flags.backend, queue: flags.queue, shardSize: flags.shardSize };
      const xiOf = (norm: 2 | 'inf') => {
        const xi = (norm === 2 ? flags.l2 : flags.linf) as number | undefined;
        return xi === undefined ? {} : { xi };
      };
      // 1. Table 1: one perturbation per model and norm, scored on X and on validation.
      const runs: { model: string; norm: 2 | 'inf'; dir: string; s: ComputeSummary }[] = [];
      for (const model of plan.models)
        for (const norm of [2, 'inf'] as const) {
          const dir = join(out, `${model}-${norm === 2 ? 'l2' : 'linf'}`);
          consoleLog.info(`crafting on ${model}, ${norm === 2 ? `L2 ${(flags.l2 as number | undefined) ?? '2000*'}` : `Linf ${(flags.linf as number | undefined) ?? 10}`} (${method}) -> ${dir}`);
          const progress = universalProgress();
          try {
            const s = await runCompute(
              { model, assets: flags.assets as string | undefined, engine, out: dir, data: plan.data, val: plan.val, sample: plan.sample, valSample: plan.valSample, limit: plan.limit, valLimit: plan.valLimit, method, options: { norm, maxPasses: flags.maxPasses as number, ...xiOf(norm) }, queue },
              { log: consoleLog, onProgress: progress.onProgress, onPass: progress.onPass },
            );
            runs.push({ model, norm, dir, s });
          } finally {
            progress.stop();
          }
        }
      // 2. Table 2: the Linf perturbations on every model (and the authors' CaffeNet perturbation).
      const linf = runs.filter((r) => r.norm === 'inf');
      const caffe = join(assets, 'data', 'lts4_universal', 'npy', 'CaffeNet.npy');
      const sources = [...linf.map((r) => transferSource(r.dir)), ...(existsSync(caffe) && plan.models.some((m) => m !== 'fashion') ? [transferSource(caffe)] : [])];
      const transferDir = join(out, 'transfer');
      const t = await transferMatrix(sources, [...plan.models, ...plan.columns], { engine, assets, data: plan.val, limit: plan.valLimit, sample: plan.valSample, log: consoleLog, remote: transferRemote(queue) });
      writeJson(join(transferDir, 'transfer.json'), t);
      writeText(join(transferDir, 'transfer.md'), transferMarkdown(t));
      writeText(join(transferDir, 'transfer.svg'), await vegaLiteToSvg(transferSpec(t)));
      // 3. The first model's analyses: fooling graph (Linf), norm curve (L2, as the paper's Fig. 8), size of X, normals.
      const first = plan.models[0];
      const firstLinf = linf.find((r) => r.model === first)!;
      const firstL2 = runs.find((r) => r.model === first && r.norm === 2)!;
      const analysis = { engine, assets: flags.assets as string | undefined, queue, limit: plan.valLimit };
      printGraph(await graphJob({ ...analysis, run: firstLinf.dir }, consoleLog));
      printBaseline(await baselineJob({ ...analysis, run: firstL2.dir, draws: 2, deepfool: true }, consoleLog));
      const sizeDir = join(out, 'sweep-size');
      const sets = { data: plan.data, val: plan.val, sample: plan.sample, valSample: plan.valSample };
      await runSweepSize({ ...common, ...sets, ...xiOf('inf'), model: first, method, norm: 'inf', sizes: plan.sizes, maxPasses: flags.maxPasses, valLimit: plan.valLimit, delta: 0.2, seed: 0, out: sizeDir }, engine);
      const normalsDir = join(out, 'normals');
      // From a large X, the normals come from a seeded sample of it (the first files are one class).
      const normalsOf = plan.sample ? { sample: plan.normals } : { limit: plan.normals };
      await runNormals({ ...common, ...sets, ...normalsOf, ...xiOf(2), model: first, valLimit: plan.valLimit, dims: '1,10,50,100', draws: 3, out: normalsDir }, engine);
      // 4. The report and the summary beside the paper.
      const dirs = [...runs.map((r) => r.dir), transferDir, sizeDir, normalsDir];
      writeText(join(out, 'report.html'), await buildReport(dirs, `uap reproduce (${method})`));
      const summary = summaryMarkdown(runs, t, sizeDir, normalsDir, { baseline: join(firstL2.dir, 'baseline.json'), graph: join(firstLinf.dir, 'graph.json') }, method, plan);
      writeText(join(out, 'summary.md'), summary);
      process.stdout.write(summary + `\nwritten: ${join(out, 'report.html')}, ${join(out, 'summary.md')}\n`);
    });
}

function summaryMarkdown(
  runs: { model: string; norm: 2 | 'inf'; s: ComputeSummary }[],
  t: Awaited<ReturnType<typeof transferMatrix>>,
  sizeDir: string,
  normalsDir: string,
  files: { baseline: string; graph: string },
  method: string,
  plan: Plan,
): string {
  const read = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
  const x = runs[0]?.s.onX.images;
  const v = runs[0]?.s.onVal?.images;
  // The radii the runs used (the first model's; the paper's by default, with L2 scaled to the input size).
  const radiusOf = (norm: 2 | 'inf') => Number(runs.find((r) => r.norm === norm)?.s.config.xi);
  const l2 = plan.l2 === undefined ? 'L2 2000*' : `L2 ${radiusOf(2)}`;
  const linf = `Linf ${radiusOf('inf')}`;
  const lines = [
    `# uap reproduce (${method}; X = ${x} images, validation = ${v} images)`,
    '',
    '## Table 1: fooling rates (paper: 10,000 images in X, 50,000 validation images; CaffeNet .. ResNet-152)',
    '',
    `| model | ${l2}, X | ${l2}, val | ${linf}, X | ${linf}, val |`,
    '|---|---|---|---|---|',
    ...[...new Set(runs.map((r) => r.model))].map((m) => {
      const l2 = runs.find((r) => r.model === m && r.norm === 2)?.s;
      const li = runs.find((r) => r.model === m && r.norm === 'inf')?.s;
      return `| ${m} | ${pct(l2?.onX.foolingRate)} | ${pct(l2?.onVal?.foolingRate)} | ${pct(li?.onX.foolingRate)} | ${pct(li?.onVal?.foolingRate)} |`;
    }),
    '| paper (six networks) | 82.9-90.7% | 82.0-90.3% | 77.8-93.8% | 77.8-93.7% |',
    '',
    plan.l2 === undefined ? `\\* 2000 at 224x224x3; other input sizes keep the per-pixel RMS (2000 * sqrt(pixels / 150528)): ${radiusOf(2)} for ${runs[0]?.model}.` : '',
    '',
    `## Table 2: transfer at ${linf} (rows crafted on, columns tested on; paper: 39.2-74.0% off the diagonal)`,
    '',
    transferMarkdown(t),
  ];
  const sizes = read(join(sizeDir, 'sweep-size.json')).points as { size: number; valFoolingRate: number }[];
  lines.push(
    `## Size of X (${plan.models[0]}, ${linf}; paper, GoogLeNet: 500 ~31%, 1000 ~37%, 2000 ~49%, 4000 ~69%)`,
    '',
    `| images in X | ${sizes.map((p) => p.size).join(' | ')} |`,
    `|---|${sizes.map(() => '---').join('|')}|`,
    `| validation fooling rate | ${sizes.map((p) => pct(p.valFoolingRate)).join(' | ')} |`,
    '',
  );
  const g = read(files.graph) as { images: number; fooled: number; dominant: { name: string; inDegree: number; share: number }[] };
  lines.push(
    `## Dominant labels (${plan.models[0]}, ${linf}, validation; paper: a few labels receive most fooled images)`,
    '',
    `${g.fooled} of ${g.images} images fooled; ${g.dominant.slice(0, 3).map((d) => `"${d.name}" receives ${pct(d.share)} of them (the main destination of ${d.inDegree} label${d.inDegree === 1 ? '' : 's'})`).join(', ')}.`,
    '',
  );
  const b = read(files.baseline) as { vNorm: number; points: { kind: string; radius: number; mean: number }[] };
  const at = (kind: string) => b.points.find((p) => p.kind === kind && Math.abs(p.radius - b.vNorm) < 1e-6)?.mean;
  lines.push(
    `## Universal vs random noise at the same L2 norm (${plan.models[0]}, ||v||_2 = ${b.vNorm.toFixed(0)}; paper, CaffeNet at 2000: universal ~85%, random ~10%)`,
    '',
    `universal ${pct(at('universal'))}; random Gaussian ${pct(at('gaussian'))}; random signs ${pct(at('random signs'))}; each image's own DeepFool perturbation ${pct(at('per-image DeepFool'))}; the sum of them ${pct(at('sum of DeepFool perturbations'))} (paper: per-image ~37%, sum ~41%).`,
    '',
  );
  const n = read(join(normalsDir, 'normals.json')) as { normals: number; xi: number; subspace: { d: number; mean: number }[]; unconstrained: { mean: number } };
  lines.push(
    `## Random vectors from the DeepFool normals' subspace (${plan.models[0]}, ${n.normals} normals, L2 ${n.xi.toFixed(0)}; paper: top-100 subspace ~38% vs ~10% unconstrained)`,
    '',
    `${n.subspace.map((p) => `top-${p.d}: ${pct(p.mean)}`).join('; ')}; unconstrained: ${pct(n.unconstrained.mean)}.`,
    '',
  );
  return lines.join('\n') + '\n';
}
