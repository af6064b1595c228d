import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Backend } from '../engine/backend.js';
import * as tf from '../tf.js';
import type { Classifier } from '../classifier/classifier.js';
import { labelName } from '../classifier/classifier.js';
import { loadModel, type ModelSpec } from '../import/load.js';
import { checkDataSpec, dataFolder, defaultData, openSet, wnidsOf, type DataSpec } from '../data/sets.js';
import { listDataset } from '../data/dataset.js';
import { Rng } from '../math/random.js';
import type { AttackSettings, Method } from '../attacks/methods.js';
import type { RunControl } from '../attacks/passes.js';
import { defaultXi } from '../math/radius.js';
import { wilsonInterval } from '../math/interval.js';
import { readBoundedText } from '../io/bounded.js';
import { writeNpy } from '../io/npy.js';
import { loadPerturbation } from '../perturbation/file.js';
import { lpNorm, projectLp } from '../math/lp.js';
import { evaluateWithNoise } from './scoring.js';
import { writeJson, writeText } from '../run/write.js';
import { commandLine } from '../run/provenance.js';
import { assetsDir, packageVersion } from '../paths.js';
import { UsageError } from '../errors.js';
import { namedLog, type Log } from '../log.js';
import { pct } from '../report/format.js';
import type { QueueOption } from '../scale/coordinator.js';
import type { JobControl } from './control.js';
import { computeJob, type ComputeSummary } from './compute.js';
import type { Evaluation } from '../evaluation/scoring.js';
import { reportJob } from './report.js';
import { auditJunit, auditMarkdown, budgetName } from './auditFormats.js';
import {
  AUDIT_SCHEMA,
  type AuditBudget,
  type AuditBudgetResult,
  type AuditComparison,
  type AuditResult,
  type AuditRun,
  type RateCI,
} from './auditResult.js';
import { modelPrints } from '../scale/shards.js';

export { AUDIT_SCHEMA, type AuditBudget, type AuditBudgetResult, type AuditComparison, type AuditResult, type AuditRun };

/**
 * `uap audit`: how vulnerable a model is to universal perturbations at the budgets a team cares about,
 * in one command. For each norm budget it runs the project's strongest methods on a crafting set,
 * scores every perturbation on held-out images beside random noise of the same norm, and takes the
 * worst case. Within a wall-clock budget it plans for: each crafting run gets an equal share of 3/4 of
 * it and ends after the pass in which its share ran out; scoring takes the rest.
 */

/** A method the audit runs: a registry method with settings; `targeted` aims at the label that absorbs most of the crafting images. */
export interface AuditMethod {
  key: string;
  title: string;
  method: Method;
  options: Partial<AttackSettings>;
  targeted?: boolean;
}

/** The strongest methods the project has, in the order they run; `sgd-targeted` uses the untargeted runs' fooling graph. */
export const AUDIT_METHODS: AuditMethod[] = [
  { key: 'sgd-adam', title: 'SGD-UAP (Adam)', method: 'sgd', options: { optimizer: 'adam' } },
  { key: 'algorithm1', title: 'Algorithm 1', method: 'algorithm1', options: {} },
  { key: 'gduap', title: 'GD-UAP (no data)', method: 'gduap', options: {} },
  { key: 'sgd-targeted', title: 'SGD-UAP towards the most absorbing label', method: 'sgd', options: { optimizer: 'adam' }, targeted: true },
];

/** The paper authors' perturbations (assets/data/lts4_universal/npy, 224x224x3, Linf 10), scored projected onto each budget's ball. */
export const AUTHORS_KEY = 'authors';
const AUTHORS_SHAPE = [224, 224, 3];

/** Options of `uap audit`. */
export interface AuditJob extends ModelSpec, DataSpec {
  backend: Backend;
  assets?: string;
  /** Norm budgets (default: the paper's Linf 10 and L2 2000 at 224x224x3, scaled to the input; the embedded model: 4x, as its demo). */
  budgets?: AuditBudget[];
  /** Wall-clock budget in seconds (default 600). */
  seconds?: number;
  /** Held-out fooling rate (0..1) above which the audit fails (exit code 1); none: it only reports. */
  failAbove?: number;
  /**
   * Passes per crafting run instead of the clock: with it the audit is the same, digit for digit, on any
   * machine (the budget then only paces nothing; runs stop at this cap or at 100% on X).
   */
  maxPasses?: number;
  /** Method keys of AUDIT_METHODS (default: all). */
  methods?: string[];
  seed?: number;
  /** An earlier audit.json to compare with: a worse worst case (intervals apart) is a regression. */
  compare?: string;
  out: string;
  queue?: QueueOption;
}

/** A budget as a folder name's prefix ("linf-10"). */
const budgetTag = (b: AuditBudget) => `${b.norm === 'inf' ? 'linf' : 'l2'}-${b.xi}`;

/** The audit's default budgets for a model: the paper's radii (4x for the embedded 28x28 model, whose boundaries lie far from its images). */
export function defaultBudgets(model: Pick<Classifier, 'inputShape' | 'name'>): AuditBudget[] {
  const scale = model.name === 'fashion-mnist-cnn' ? 4 : 1;
  return (['inf', 2] as const).map((norm) => ({ norm, xi: defaultXi(norm, model.inputShape) * scale }));
}

/** The methods of `keys` (default all), refusing unknown ones with the choices named. */
export function auditMethods(keys?: string[]): { crafted: AuditMethod[]; authors: boolean } {
  if (!keys) return { crafted: AUDIT_METHODS, authors: true };
  const choices = [...AUDIT_METHODS.map((x) => x.key), AUTHORS_KEY];
  for (const k of keys) if (!choices.includes(k)) throw new UsageError(`{methods} ${k}: expected some of ${choices.join(', ')}`);
  return { crafted: AUDIT_METHODS.filter((m) => keys.includes(m.key)), authors: keys.includes(AUTHORS_KEY) };
}

/** `uap audit`: every method at every budget, the worst case per budget, the verdict; audit.json, audit.xml, audit.md, report.html. */
export async function auditJob(
  job: AuditJob,
  ctl: JobControl & { onRun?: (r: AuditRun, b: AuditBudget) => void; onProgress?: RunControl['onProgress'] } = {},
): Promise<{
  audit: AuditResult;
  files: string[];
}> {
  const log = namedLog(ctl.log);
  const started = Date.now();
  const seconds = job.seconds ?? 600;
  if (!(seconds > 0)) throw new UsageError(`{budget} ${seconds}: expected a positive time`);
  if (job.failAbove !== undefined && !(job.failAbove >= 0 && job.failAbove <= 1))
    throw new UsageError(`{failAbove} ${job.failAbove}: expected a rate from 0% to 100%`);
  checkDataSpec(job);
  const before = job.compare === undefined ? undefined : readAudit(job.compare);
  const { crafted: methods, authors } = auditMethods(job.methods);
  const assets = assetsDir(job.assets);
  const model = await loadModel(job.model, { assets, card: job.card, backend: job.backend }, log);
  try {
    // One folder given: the audit splits it (seeded) so that it never reports on an image it crafted on.
    const given: DataSpec = {
      data: job.data,
      val: job.val,
      labels: job.labels,
      valLabels: job.valLabels,
      limit: job.limit,
      valLimit: job.valLimit,
      sample: job.sample,
      valSample: job.valSample,
      strict: job.strict,
      allowPartial: job.allowPartial,
    };
    const sets: DataSpec = job.data !== undefined && job.val === undefined ? { ...given, ...splitData(model, job, assets, log) } : given;
    const budgets = job.budgets ?? defaultBudgets(model);
    if (!budgets.length) throw new UsageError('{norms}: give at least one norm budget, e.g. inf:10');
    const share = (0.75 * seconds * 1000) / (budgets.length * methods.length);
    const seed = job.seed ?? 0;
    const results: AuditBudgetResult[] = [];
    const summaries: ComputeSummary[] = [];
    for (const b of budgets) {
      const r = await auditBudget(job, b, { model, methods, authors, sets, assets, seed, share, log, ctl });
      results.push(r.result);
      summaries.push(...r.summaries);
    }
    if (!summaries.length) throw new UsageError('{methods}: give at least one crafting method beside authors');
    const audit: AuditResult = {
      ...auditHeader(job, model, await modelPrints(model), summaries[0]),
      seed,
      budgetSeconds: seconds,
      maxPasses: job.maxPasses ?? null,
      failAbove: job.failAbove ?? null,
      methods: [
        ...methods.map((m) => m.key),
        ...(authors && results.some((r) => r.runs.some((x) => x.key === AUTHORS_KEY)) ? [AUTHORS_KEY] : []),
      ],
      budgets: results,
      verdict: results.some((r) => r.verdict === 'fail') ? 'fail' : job.failAbove === undefined ? 'reported' : 'pass',
      seconds: (Date.now() - started) / 1000,
    };
    if (before) audit.compare = compareAudits(before.audit, audit, before.file);
    const files = ['audit.json', 'audit.xml', 'audit.md'].map((f) => join(job.out, f));
    writeJson(files[0], audit);
    writeText(files[1], auditJunit(audit));
    writeText(files[2], auditMarkdown(audit));
    const report = await reportJob({
      dirs: results.flatMap((r) => r.runs.filter((x) => x.key !== AUTHORS_KEY).map((x) => join(job.out, x.run))),
      out: join(job.out, 'report.html'),
      title: `uap audit: ${model.name}`,
    });
    return { audit, files: [...files, report.file] };
  } finally {
    model.dispose();
  }
}

/** What one budget's runs share: the model, the methods, the image sets, the time share per run. */
interface BudgetContext {
  model: Classifier;
  methods: AuditMethod[];
  authors: boolean;
  sets: DataSpec;
  assets: string;
  seed: number;
  /** Milliseconds of crafting per run (when no pass cap is given). */
  share: number;
  log: Log;
  ctl: Parameters<typeof auditJob>[1] & object;
}

/** Every method at one budget (the targeted one aimed at the strongest untargeted run's most absorbing label), the worst case and the verdict. */
async function auditBudget(
  job: AuditJob,
  b: AuditBudget,
  c: BudgetContext,
): Promise<{ result: AuditBudgetResult; summaries: ComputeSummary[] }> {
  const { model, log, ctl } = c;
  const runs: AuditRun[] = [];
  const summaries: ComputeSummary[] = [];
  // The untargeted run that fooled most crafting images: its most absorbing label is the target.
  let strongest: ComputeSummary | undefined;
  for (const m of c.methods) {
    const name = `${budgetTag(b)}-${m.key}`;
    const target = m.targeted && strongest ? mostAbsorbing(strongest) : undefined;
    if (m.targeted && target === undefined) {
      log.warn(`audit ${name}: no untargeted run fooled a crafting image, so there is no absorbing label to aim at; left out`);
      continue;
    }
    const plan = job.maxPasses ? `${job.maxPasses} passes` : `${Math.round(c.share / 1000)} s of crafting`;
    log.info(`audit: ${m.title}, ${budgetName(b)} (${plan}) -> ${join(job.out, name)}`);
    const s = await computeJob(
      {
        model: job.model,
        card: job.card,
        backend: job.backend,
        assets: job.assets,
        ...c.sets,
        out: join(job.out, name),
        force: true,
        method: m.method,
        options: { ...m.options, norm: b.norm, xi: b.xi, seed: c.seed, delta: 0, maxPasses: job.maxPasses ?? 1000 },
        target,
        randomDraws: 3,
        queue: job.queue,
      },
      { log, model, signal: ctl.signal, onProgress: ctl.onProgress, ...(job.maxPasses ? {} : { deadline: Date.now() + c.share }) },
    );
    summaries.push(s);
    const run = auditRun(m, name, s, model, target);
    runs.push(run);
    ctl.onRun?.(run, b);
    if (!m.targeted && (!strongest || s.onX.foolingRate > strongest.onX.foolingRate)) strongest = s;
  }
  if (c.authors) runs.push(...(await authorsRuns(model, b, { ...job, ...c.sets }, c.assets, log)));
  if (!runs.length)
    throw new UsageError(`{methods}: nothing ran at ${budgetName(b)} (the authors' perturbations need a 224x224x3 model and the assets)`);
  const worst = runs.reduce((a, r) => (r.heldOutFoolingRate > a.heldOutFoolingRate ? r : a));
  const verdict = job.failAbove === undefined ? 'reported' : worst.heldOutFoolingRate > job.failAbove ? 'fail' : 'pass';
  const noiseFoolingRate = await budgetNoise(model, b, { ...job, ...c.sets }, c.assets, log);
  return { result: { ...b, verdict, noiseFoolingRate, worst, runs }, summaries };
}

/** The audit's header: its schema and version, the command, the model's identity, the image sets' hashes (the first run's provenance). */
function auditHeader(
  job: AuditJob,
  model: Classifier,
  prints: Awaited<ReturnType<typeof modelPrints>>,
  first: ComputeSummary,
): Pick<AuditResult, 'schema' | 'uapVersion' | 'date' | 'command' | 'model' | 'data'> {
  const prov = first.config.provenance ?? {};
  return {
    schema: AUDIT_SCHEMA,
    uapVersion: packageVersion(),
    date: new Date().toISOString(),
    command: commandLine(),
    model: {
      spec: job.model,
      name: model.name,
      sha256: prints.files ?? null,
      fingerprint: prints.print,
      inputShape: [...model.inputShape],
      numClasses: model.numClasses,
    },
    data: {
      crafting: { images: first.onX.images, listSha256: (prov.dataListSha256 as string | null | undefined) ?? null },
      heldOut: { images: first.onVal?.images ?? 0, listSha256: (prov.valListSha256 as string | null | undefined) ?? null },
    },
  };
}

function auditRun(m: AuditMethod, run: string, s: ComputeSummary, model: Classifier, target?: number): AuditRun {
  if (!s.onVal) throw new Error('audit: a run without held-out scores');
  return {
    key: m.key,
    method: target === undefined ? m.title : `${m.title} (${labelName(model, target).split(',')[0]})`,
    run,
    ...heldOutFigures(s.onVal, model),
    noiseFoolingRate: s.randomOnVal?.sameLp.mean ?? null,
    craftSeconds: s.result.seconds,
    passes: s.result.passes,
    stopReason: s.result.stopReason,
    ...(target !== undefined ? { target: { label: target, name: labelName(model, target) } } : {}),
  };
}

/** What a run's held-out scores give its AuditRun: rate, interval, accuracies and the labels fooled images receive. */
function heldOutFigures(
  ev: Evaluation,
  model: Classifier,
): Pick<AuditRun, 'heldOutImages' | 'heldOutFoolingRate' | 'interval' | 'cleanAccuracy' | 'perturbedAccuracy' | 'dominantLabels'> {
  return {
    heldOutImages: ev.images,
    heldOutFoolingRate: ev.foolingRate,
    interval: wilsonInterval(ev.foolingRate, ev.images),
    cleanAccuracy: ev.cleanAccuracy ?? null,
    perturbedAccuracy: ev.perturbedAccuracy ?? null,
    dominantLabels: receivedLabels(ev.cleanPred, ev.advPred)
      .slice(0, 3)
      .map((d) => ({ ...d, name: labelName(model, d.label) })),
  };
}

/** Share of a single given folder the audit keeps for crafting; the rest is held out. */
export const CRAFTING_SHARE = 0.5;

/**
 * A seeded split of one folder of labelled images into crafting and held-out images, written as two
 * labels files in the audit's folder (the record of which image went where).
 */
function splitData(model: Classifier, job: AuditJob, assets: string, log: Log): Pick<DataSpec, 'data' | 'labels' | 'val' | 'valLabels'> {
  const dir = dataFolder(job.data!, assets);
  const items = listDataset(dir, {
    labelsFile: job.labels,
    labelNames: model.labels,
    wnids: model.labelSpace === 'imagenet' ? wnidsOf(assets) : undefined,
    allowPartial: job.allowPartial,
    warn: log.warn,
  });
  if (items.some((i) => i.member !== undefined || i.label === undefined))
    throw new UsageError(
      `{data} ${job.data}: without {val} the audit splits a folder of labelled images into crafting and held-out images; for tar shards or unlabelled images give the held-out images with {val}`,
    );
  if (items.length < 4)
    throw new UsageError(`{data} ${job.data}: ${items.length} images; an audit splits them in two and needs at least 4`);
  const order = new Rng(job.seed ?? 0).permutation(items.length);
  const cut = Math.round(items.length * CRAFTING_SHARE);
  const write = (name: string, idx: number[]) => {
    const file = resolve(job.out, name);
    writeText(file, idx.map((i) => `${resolve(items[i].path)}, ${items[i].label}`).join('\n') + '\n');
    return file;
  };
  const crafting = write(
    'crafting-split.txt',
    order.slice(0, cut).sort((a, b) => a - b),
  );
  const heldOut = write(
    'held-out-split.txt',
    order.slice(cut).sort((a, b) => a - b),
  );
  log.info(
    `audit: ${job.data} split (seed ${job.seed ?? 0}) into ${cut} crafting and ${items.length - cut} held-out images (${crafting}, ${heldOut})`,
  );
  return { data: crafting, labels: crafting, val: heldOut, valLabels: heldOut };
}

/** The held-out images, as every run of the audit scores them. */
function heldOutSet(model: Classifier, job: AuditJob, assets: string, log: Log, what: string) {
  return openSet(model, job.val ?? defaultData(model, assets).val, {
    labels: job.valLabels,
    limit: job.valLimit,
    sample: job.valSample === undefined ? undefined : { count: job.valSample, seed: job.seed ?? 0 },
    assets,
    log,
    what,
  });
}

/** Random noise of the budget's norm and radius on the held-out images, mean of 3 seeded draws. */
async function budgetNoise(model: Classifier, b: AuditBudget, job: AuditJob, assets: string, log: Log): Promise<number> {
  const zero = tf.zeros(model.inputShape) as tf.Tensor3D;
  try {
    const quiet = { info: () => {}, warn: log.warn };
    const { baselines } = await evaluateWithNoise(model, heldOutSet(model, job, assets, quiet, 'held-out images'), zero, [b], 3);
    return baselines[0].mean;
  } finally {
    zero.dispose();
  }
}

/**
 * The paper authors' perturbations, each projected onto the budget's ball and scored on the held-out
 * images beside noise; none when the model's input is not 224x224x3 or the assets lack them.
 */
async function authorsRuns(model: Classifier, b: AuditBudget, job: AuditJob, assets: string, log: Log): Promise<AuditRun[]> {
  const dir = join(assets, 'data', 'lts4_universal', 'npy');
  if (model.inputShape.join('x') !== AUTHORS_SHAPE.join('x') || !existsSync(dir)) return [];
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.npy'))
    .sort();
  const runs: AuditRun[] = [];
  for (const f of files) {
    const name = `${budgetTag(b)}-${AUTHORS_KEY}-${f.replace(/\.npy$/, '')}`;
    const loaded = loadPerturbation(join(dir, f), model, log);
    const v = projectLp(loaded, b.norm, b.xi);
    loaded.dispose();
    try {
      const set = heldOutSet(model, job, assets, log, `held-out images (${f})`);
      const { ev, baselines } = await evaluateWithNoise(model, set, v, [{ norm: b.norm, xi: lpNorm(v, b.norm) }], 3);
      writeNpy(join(job.out, name, 'perturbation.npy'), { data: v.dataSync() as Float32Array, shape: [...model.inputShape] });
      runs.push({
        key: AUTHORS_KEY,
        method: `the paper authors' ${f.replace(/\.npy$/, '')} perturbation, projected`,
        run: name,
        ...heldOutFigures(ev, model),
        noiseFoolingRate: baselines[0]?.mean ?? null,
        craftSeconds: 0,
        passes: 0,
        stopReason: 'precomputed (Moosavi-Dezfooli et al.)',
      });
    } finally {
      v.dispose();
    }
  }
  return runs;
}

/** The labels fooled images receive, by share of the fooled, most first. */
export function receivedLabels(clean: Int32Array, adv: Int32Array): { label: number; share: number }[] {
  const counts = new Map<number, number>();
  let fooled = 0;
  for (let i = 0; i < clean.length; i++)
    if (adv[i] !== clean[i]) {
      fooled++;
      counts.set(adv[i], (counts.get(adv[i]) ?? 0) + 1);
    }
  return [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([label, n]) => ({ label, share: n / fooled }));
}

/** The label that absorbs most fooled crafting images (never the held-out ones: the audit reports on those). */
function mostAbsorbing(s: ComputeSummary): number | undefined {
  return receivedLabels(s.onX.cleanPred, s.onX.advPred)[0]?.label;
}

/** An earlier audit.json, checked for its schema. */
export function readAudit(file: string): { audit: AuditResult; file: string } {
  if (!existsSync(file)) throw new UsageError(`{compare} ${file}: not found (expected an audit.json of uap audit)`);
  let audit: AuditResult;
  try {
    audit = JSON.parse(readBoundedText(file, { what: 'audit' })) as AuditResult;
  } catch (e) {
    throw new UsageError(`{compare} ${file}: not JSON (${(e as Error).message})`);
  }
  if (audit?.schema !== AUDIT_SCHEMA || !Array.isArray(audit.budgets))
    throw new UsageError(
      `{compare} ${file}: not an audit.json of schema ${AUDIT_SCHEMA} (its "schema" is ${JSON.stringify(audit?.schema)})`,
    );
  for (const b of audit.budgets) {
    const w = b?.worst;
    if (
      !(b.norm === 2 || b.norm === 'inf') ||
      !(typeof b.xi === 'number' && b.xi > 0) ||
      !(typeof w?.heldOutFoolingRate === 'number' && w.heldOutFoolingRate >= 0 && w.heldOutFoolingRate <= 1) ||
      !(Number.isInteger(w.heldOutImages) && w.heldOutImages > 0)
    )
      throw new UsageError(`{compare} ${file}: a budget without its norm, radius, worst-case rate and image count (a damaged audit.json?)`);
  }
  return { audit, file };
}

/** This audit's worst cases beside an earlier one's, budget by budget (same norm and radius): worse or better only with intervals apart. */
export function compareAudits(before: AuditResult, after: AuditResult, against: string): AuditComparison {
  const ci = (r: AuditRun): RateCI => ({
    rate: r.heldOutFoolingRate,
    interval: wilsonInterval(r.heldOutFoolingRate, r.heldOutImages),
    images: r.heldOutImages,
  });
  const budgets = after.budgets.flatMap((a) => {
    const b = before.budgets.find((x) => x.norm === a.norm && Math.abs(x.xi - a.xi) < 1e-9);
    if (!b) return [];
    const [was, now] = [ci(b.worst), ci(a.worst)];
    const change = now.interval[0] > was.interval[1] ? 'worse' : now.interval[1] < was.interval[0] ? 'better' : 'within the noise';
    return [{ norm: a.norm, xi: a.xi, before: was, after: now, change } as AuditComparison['budgets'][number]];
  });
  return { against, budgets, regression: budgets.some((b) => b.change === 'worse') };
}

/** One line per budget for the terminal. */
export function auditLines(a: AuditResult): string[] {
  return a.budgets.map((b) => {
    const w = b.worst;
    return `${budgetName(b)}: worst case ${pct(w.heldOutFoolingRate)} (95% CI ${pct(w.interval[0])}-${pct(w.interval[1])}) of ${w.heldOutImages} held-out images, by ${w.method}; random noise of the budget ${pct(b.noiseFoolingRate)}${b.verdict === 'reported' ? '' : ` -> ${b.verdict.toUpperCase()}`}`;
  });
}
