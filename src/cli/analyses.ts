import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { Classifier } from '../model/classifier.js';
import type { ImageSet } from '../data/dataset.js';
import type { Norm } from '../math/lp.js';
import { DEFAULT_FACTORS } from '../analysis/baseline.js';
import { UsageError } from '../errors.js';
import { assetsDir } from '../paths.js';
import { loadModel, loadSet, openSet, dataFolder, defaultData, defaultXi, methodOptions, resolveTarget, type Method } from '../pipeline.js';
import type { StreamedImages } from '../data/stream.js';
import { craftOnQueue, labelsOnQueue, type QueueScoring } from '../scale/coordinator.js';
import { normalsAnalysis, normalsSpec } from '../analysis/normals.js';
import { transferMatrix, transferSource, transferMarkdown, transferSpec, type RemoteLabels } from '../analysis/transfer.js';
import { vegaLiteToSvg } from '../report/plots.js';
import { buildReport } from '../report/html.js';
import { writeJson, writeText } from '../io/run.js';
import { addModelFlags, addDataFlags, addAttackFlags, attackOptions, dataSpec, cardOverrides, count, norm, positive, addFormatFlags, perturbationFormat, type AttackFlags, ASSETS_HELP } from './flags.js';
import { sizeSweep, sizeSpec, DEFAULT_SIZES } from '../analysis/sizes.js';
import { consoleLog, pct, startBackend } from './console.js';
import type { Engine } from '../backend.js';
import { graphJob, baselineJob, type BaselineJob, type PerturbationAnalysisJob } from '../jobs/perturbationAnalyses.js';
import { addQueueFlags, queueOption } from './worker.js';


export function transferCommand(): Command {
  const cmd = new Command('transfer')
    .description("transfer matrix: each perturbation (run directory, .npy or .npz) evaluated on each model (the paper's Table 2)")
    .argument('<sources...>', 'run directories of `uap compute` (their config.json names the model) or .npy / .npz perturbations');
  addFormatFlags(cmd)
    .option('--assets <dir>', ASSETS_HELP)
    .option('--backend <name>', 'where models run: onnx (default when its self-check passes), wasm or cpu')
    .option('--models <names>', 'comma-separated models to test on (default: the models the runs were crafted on)')
    .option('-d, --data <dir>', "images to test on (default: each model's validation set)")
    .option('--limit <n>', 'use at most n images per model', count('limit'))
    .option('--batch-size <n>', 'images per forward pass', count('batch-size'), 32)
    .option('-o, --out <dir>', 'writes transfer.json, transfer.md, transfer.svg', 'runs/transfer');
  addQueueFlags(cmd)
    .action(async (sources: string[], flags: Record<string, unknown>) => {
      const queue = queueOption(flags);
      const format = perturbationFormat(flags);
      const rows = sources.map((s) => transferSource(s, format));
      const models = flags.models
        ? String(flags.models).split(',').map((s) => s.trim()).filter(Boolean)
        : [...new Set(rows.map((r) => r.craftedOn).filter((m): m is string => m !== null))];
      const engine = await startBackend(flags.backend);
      const t = await transferMatrix(rows, models, {
        engine, assets: assetsDir(flags.assets as string | undefined), data: flags.data as string | undefined,
        limit: flags.limit as number | undefined, batchSize: flags.batchSize as number, log: consoleLog,
        remote: transferRemote(queue, flags.batchSize as number),
      });
      const out = flags.out as string;
      writeJson(join(out, 'transfer.json'), t);
      writeText(join(out, 'transfer.md'), transferMarkdown(t));
      writeText(join(out, 'transfer.svg'), await vegaLiteToSvg(transferSpec(t)));
      process.stdout.write(transferMarkdown(t) + `written: ${['transfer.json', 'transfer.md', 'transfer.svg'].map((f) => join(out, f)).join(', ')}\n`);
    });
  return cmd;
}

/** Queued transfer: every cell of a column, shard by shard on the workers, joined in order (the same labels). */
export function transferRemote(queue: { url: string; shardSize?: number } | undefined, batchSize = 32): RemoteLabels | undefined {
  return queue && ((c, vs) => labelsOnQueue({ ...queue, model: { spec: c.spec, card: c.card }, data: c.data, dir: c.folder, warn: (m) => consoleLog.warn(m) }, c.model, c.set, vs, { batchSize }));
}

/** The options of an analysis of one perturbation (`uap graph`, `uap baseline`) from its flags. */
function analysisJob(flags: Record<string, unknown>, engine: Engine): PerturbationAnalysisJob {
  return {
    engine, run: flags.run as string | undefined, model: flags.model as string | undefined, perturbation: flags.perturbation as string | undefined,
    format: perturbationFormat(flags), card: cardOverrides(flags), assets: flags.assets as string | undefined, data: flags.data as string | undefined,
    limit: flags.limit as number | undefined, out: flags.out as string | undefined, queue: queueOption(flags),
  };
}

/** --run / -v / --data / --limit / --out of the analyses of one perturbation. */
function addRunFlags(cmd: Command, outputs: string): Command {
  cmd
    .option('--run <dir>', 'a `uap compute` run directory: its model and perturbation.npy (and the default --out)')
    .option('-v, --perturbation <file>', 'perturbation to analyse (with --model; .npy or .npz, read with --layout / --units / --array)')
    .option('-d, --data <dir>', "images (default: the model's validation set)")
    .option('--limit <n>', "use at most n images (default with --run: the run's own validation images)", count('limit'))
    .option('-o, --out <dir>', `writes ${outputs} (default: the run directory, else runs/analysis)`);
  return addFormatFlags(cmd);
}

/** Prints what `uap baseline` found: each kind of perturbation at ||v||, and the files. */
export function printBaseline({ sweep, files }: Awaited<ReturnType<typeof baselineJob>>): void {
  const at1 = sweep.points.filter((pt) => Math.abs(pt.radius - sweep.vNorm) < 1e-9);
  process.stdout.write(`at ||v|| = ${sweep.vNorm.toFixed(1)}: ${at1.map((pt) => `${pt.kind} ${pct(pt.mean)}`).join(', ')}\nwritten: ${files.join(', ')}\n`);
}

/** The options of `uap baseline` from its flags. */
function baselineOptions(flags: Record<string, unknown>, engine: Engine): BaselineJob {
  const factors = flags.factors === undefined ? undefined : String(flags.factors).split(',').map(Number);
  if (factors?.some((f) => !Number.isFinite(f) || f < 0)) throw new UsageError(`--factors ${String(flags.factors)}: expected comma-separated numbers >= 0, e.g. 0,0.5,1,2`);
  return {
    ...analysisJob(flags, engine), norm: flags.norm as Norm | undefined, factors, draws: flags.draws as number, deepfool: Boolean(flags.deepfool),
    onPoint: (pt) => consoleLog.info(`${pt.kind} at ${pt.radius.toFixed(1)}: ${pct(pt.mean)}`),
  };
}

export function baselineCommand(): Command {
  const cmd = new Command('baseline').description('fooling rate against norm: the perturbation scaled vs random sign and Gaussian noise of the same norm (JSON, SVG)');
  addModelFlags(cmd, 'fashion');
  addRunFlags(cmd, 'baseline.json, baseline.svg')
    .addOption(new Option('-p, --norm <p>', 'norm of the sweep: 2 or inf (default: the run\'s)').argParser(norm))
    .option('--factors <list>', `radii as multiples of ||v|| (default ${DEFAULT_FACTORS.join(',')})`)
    .option('--draws <n>', 'random draws per radius', count('draws'), 3)
    .option('--deepfool', "also each image's own DeepFool perturbation at each radius, and the sum of them (one DeepFool pass over the images)");
  addQueueFlags(cmd)
    .action(async (flags: Record<string, unknown>) => {
      printBaseline(await baselineJob(baselineOptions(flags, await startBackend(flags.backend)), consoleLog));
    });
  return cmd;
}

/** Loads the model, the images X (`--data`, default limit `xLimit`) and the validation images for `use`. */
/** Where X and the validation images were read (the folders here, and as the user named them: what queued work names). */
interface SetsWhere {
  xDir: string;
  vDir: string;
  data: string | null;
  val: string | null;
  strict?: boolean;
}

/** The queue settings (--queue) for X ('data') or the validation images ('val') of withModelAndSets; undefined without --queue. */
function setsQueue(flags: Record<string, unknown>, where: SetsWhere, role: 'data' | 'val'): QueueScoring | undefined {
  const queue = queueOption(flags);
  return queue && { ...queue, model: { spec: flags.model as string, card: cardOverrides(flags) }, data: role === 'data' ? where.data : where.val, role, dir: role === 'data' ? where.xDir : where.vDir, strict: where.strict, warn: (m: string) => consoleLog.warn(m) };
}

async function withModelAndSets(
  flags: Record<string, unknown>,
  engine: Engine,
  what: string,
  xLimit: number | undefined,
  use: (model: Classifier, X: ImageSet, V: StreamedImages, where: SetsWhere) => Promise<void>,
): Promise<void> {
  const assets = assetsDir(flags.assets as string | undefined);
  const model = await loadModel(flags.model as string, { assets, card: cardOverrides(flags), engine }, consoleLog);
  try {
    const spec = dataSpec(flags);
    const defaults = defaultData(model, assets);
    const seed = (flags.seed as number | undefined) ?? 0;
    const sample = (count?: number) => (count === undefined ? undefined : { count, seed });
    const X = await loadSet(model, spec.data ?? defaults.data, { labels: spec.labels, limit: spec.limit ?? (spec.sample === undefined ? xLimit : undefined), sample: sample(spec.sample), strict: spec.strict, assets, log: consoleLog, what: 'images X' });
    if (spec.val === 'none') throw new UsageError(`--val none: ${what} needs validation images`);
    const V = openSet(model, spec.val ?? defaults.val, { labels: spec.valLabels, limit: spec.valLimit, sample: sample(spec.valSample), strict: spec.strict, assets, log: consoleLog, what: 'validation set' });
    await use(model, X, V, { xDir: dataFolder(spec.data ?? defaults.data, assets), vDir: dataFolder(spec.val ?? defaults.val, assets), data: spec.data ?? null, val: spec.val ?? null, strict: spec.strict });
  } finally {
    model.dispose();
  }
}

/** Validation fooling rate against |X| (flags as the command takes them): sweep-size.json, sweep-size.svg. */
export async function runSweepSize(flags: Record<string, unknown>, engine: Engine): Promise<void> {
  const sizes = flags.sizes === undefined ? undefined : String(flags.sizes).split(',').map(Number);
  if (sizes?.some((n) => !Number.isInteger(n) || n < 1)) throw new UsageError(`--sizes ${String(flags.sizes)}: expected comma-separated integers >= 1, e.g. 50,100,500`);
  await withModelAndSets(flags, engine, 'the size sweep', undefined, async (model, X, V, where) => {
    const method = (flags.method as Method | undefined) ?? 'algorithm1';
    const options = methodOptions(method, model, attackOptions(flags as unknown as AttackFlags), resolveTarget(flags.target as string | undefined, model));
    // Queued: every point crafts on a worker at once, then all the v are scored on the workers in one pass.
    const [qx, qv] = [setsQueue(flags, where, 'data'), setsQueue(flags, where, 'val')];
    const remote = qx && qv && {
      craft: (sets: ImageSet[]) => craftOnQueue(qx, model, sets.map((X) => ({ X, options })), method),
      labels: (vs: Float32Array[]) => labelsOnQueue(qv, model, V, vs, { batchSize: 32 }),
    };
    const points = await sizeSweep(model, X, V, method, options, {
      sizes, seed: options.seed, remote,
      onPoint: (p) => consoleLog.info(`|X| = ${p.size}: validation ${pct(p.valFoolingRate)}, X ${pct(p.xFoolingRate)}, ${p.passes} pass(es), ${p.seconds.toFixed(0)} s`),
    });
    const out = flags.out as string;
    writeJson(join(out, 'sweep-size.json'), { model: model.name, method, options, validationImages: V.size, points });
    writeText(join(out, 'sweep-size.svg'), await vegaLiteToSvg(sizeSpec(points, `${model.name}: fooling rate against |X| (${method})`)));
    process.stdout.write(points.map((p) => `|X| ${p.size}: ${pct(p.valFoolingRate)} on validation`).join('\n') + `\nwritten: ${join(out, 'sweep-size.json')}, ${join(out, 'sweep-size.svg')}\n`);
  });
}

export function sweepSizeCommand(): Command {
  const cmd = new Command('sweep-size').description('validation fooling rate against the size of X (nested seeded subsets, same method and settings; JSON, SVG)');
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  addAttackFlags(cmd);
  cmd
    .option('--sizes <list>', `sizes of X (default ${DEFAULT_SIZES.join(',')}, up to the images there are, and all of them)`)
    .option('-o, --out <dir>', 'writes sweep-size.json, sweep-size.svg', 'runs/sweep-size');
  addQueueFlags(cmd)
    .action(async (flags: Record<string, unknown>) => {
      await runSweepSize(flags, await startBackend(flags.backend));
    });
  return cmd;
}

/** DeepFool normals analysis (flags as the command takes them): normals.json, normals.svg. */
export async function runNormals(flags: Record<string, unknown>, engine: Engine): Promise<void> {
  const dims = flags.dims === undefined ? undefined : String(flags.dims).split(',').map(Number);
  if (dims?.some((n) => !Number.isInteger(n) || n < 1)) throw new UsageError(`--dims ${String(flags.dims)}: expected comma-separated integers >= 1, e.g. 1,10,50`);
  await withModelAndSets(flags, engine, 'the subspace fooling rates', 200, async (model, X, V, where) => {
    const xi = (flags.xi as number | undefined) ?? defaultXi(2, model.inputShape);
    // Queued: the random vectors are scored on the workers (the DeepFool normals of X are found here).
    const qv = setsQueue(flags, where, 'val');
    const labels = qv && ((vs: Float32Array[]) => labelsOnQueue(qv, model, V, vs, { batchSize: 32 }));
    const r = await normalsAnalysis(model, X, V, { xi, dims, draws: flags.draws as number, labels, onProgress: (done) => consoleLog.info(`DeepFool normals: ${done}/${X.size}`) });
    const out = flags.out as string;
    writeJson(join(out, 'normals.json'), { model: model.name, ...r });
    writeText(join(out, 'normals.svg'), await vegaLiteToSvg(normalsSpec(r, `${model.name}: singular values of ${r.normals} DeepFool normals`)));
    process.stdout.write(
      [
        `${r.normals} normals of ${r.images} images; random vectors of L2 ${xi.toFixed(0)} on ${V.size} validation images:`,
        ...r.subspace.map((p) => `  from the top-${p.d} subspace: ${pct(p.mean)} (min ${pct(p.min)}, max ${pct(p.max)})`),
        `  unconstrained: ${pct(r.unconstrained.mean)}`,
        `written: ${join(out, 'normals.json')}, ${join(out, 'normals.svg')}`,
      ].join('\n') + '\n',
    );
  });
}

export function normalsCommand(): Command {
  const cmd = new Command('normals').description('DeepFool boundary normals: singular values vs random vectors, and fooling by random vectors from their top-d subspace (JSON, SVG)');
  addModelFlags(cmd, 'fashion');
  addDataFlags(cmd);
  cmd
    .option('--xi <x>', 'L2 norm of the random vectors, pixel units (default: 2000 at 224x224x3, scaled by sqrt(pixels))', positive('xi'))
    .option('--dims <list>', 'subspace dimensions d (default 1,10,50,100,200, up to the rank)')
    .option('--draws <n>', 'random vectors per d', count('draws'), 3)
    .option('-o, --out <dir>', 'writes normals.json, normals.svg', 'runs/normals');
  addQueueFlags(cmd)
    .action(async (flags: Record<string, unknown>) => {
      await runNormals(flags, await startBackend(flags.backend));
    });
  return cmd;
}

export function reportCommand(): Command {
  return new Command('report')
    .description('one self-contained HTML page (opens offline) for run directories of compute, of the analyses and of finetune')
    .argument('<dirs...>', 'run directories (uap compute --out, or the --out of transfer / graph / baseline / sweep-size / normals)')
    .option('-o, --out <file>', 'the HTML file (default: report.html in the run directory when one is given, else runs/report.html)')
    .option('--title <text>', 'page title')
    .action(async (dirs: string[], flags: Record<string, unknown>) => {
      const html = await buildReport(dirs, flags.title as string | undefined);
      const out = (flags.out as string | undefined) ?? (dirs.length === 1 ? join(dirs[0], 'report.html') : 'runs/report.html');
      writeText(out, html);
      process.stdout.write(`written: ${out} (${(html.length / 1e6).toFixed(1)} MB, self-contained)\n`);
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
  const cmd = new Command('graph').description('fooling graph: where the fooled images of each label go; dominant labels; components (JSON, DOT, SVG)');
  addModelFlags(cmd, 'fashion');
  addQueueFlags(addRunFlags(cmd, 'graph.json, graph.dot, graph.svg')).action(async (flags: Record<string, unknown>) => {
    printGraph(await graphJob(analysisJob(flags, await startBackend(flags.backend)), consoleLog));
  });
  return cmd;
}
