import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AttackSettings, Method } from '../attacks/methods.js';
import type { UniversalResult } from '../attacks/passes.js';
import type { CardOverrides } from '../import/load.js';
import type { Norm } from '../math/lp.js';
import type { Evaluation } from '../evaluation/scoring.js';
import type { Baseline } from '../evaluation/noiseScore.js';
import type { ValidationDetail } from '../evaluation/perImage.js';
import { historyProblem } from '../io/checkpoint.js';
import { readBoundedJson } from '../io/bounded.js';
import { UsageError } from '../errors.js';
import { writeJson } from './write.js';

/**
 * The two files that make a folder a `uap compute` run, typed once: config.json (what was asked: the
 * model, the images, the method's full options, provenance) and metrics.json (what came out). `uap
 * compute` writes them here; the report, transfer, the analyses and resume read them back through
 * this module (the checked subset the continuing commands need is `readRunConfig`, config.ts).
 */

/** config.json: the model and images of the run, and the method's options (every one, defaults filled). */
export type RunConfigFile = AttackSettings & {
  /** The loaded model's name, and the model as it was named (`loadModel`'s spec: a bundled name or a path). */
  model: string;
  modelSpec: string;
  assets: string;
  /** Crafting set X and validation folders (val null: none), files listed for X, images decoded. */
  data: string;
  val: string | null;
  listed: number;
  images: number;
  valImages: number;
  method: Method;
  /** How the validation set was chosen: the run's analyses (graph, baseline) score the same images. */
  valLabels: string | null;
  valLimit: number | null;
  valSample: number | null;
  /** Card fields given as flags (an ONNX model's mean / std): the analyses of this run load the same model. */
  modelCard?: CardOverrides;
  targetName: string | null;
  /** The warm start's file. */
  init: string | null;
  provenance?: Record<string, unknown>;
};

/** An evaluation's figures (without its per-image predictions). */
export type EvaluationFigures = Omit<Evaluation, 'cleanPred' | 'advPred'>;

/** metrics.json: the run's result, its rates on X and validation, noise beside it, and the per-class detail. */
export interface RunMetricsFile {
  norm: Norm;
  xi: number;
  normL2: number;
  normInf: number;
  /** The run's result without v and X's clean labels. */
  run: Omit<UniversalResult, 'v' | 'cleanPred'>;
  onX: EvaluationFigures;
  onVal: EvaluationFigures | null;
  /** Random noise of v's own norm (sameLp) and of its L2 norm (sameL2) on the validation images. */
  randomNoiseOnVal: { sameLp: Baseline; sameL2: Baseline } | null;
  target: { index: number; name: string; successOnX: number | null; successOnVal: number | null } | null;
  classDiscriminative?: { classes: number[]; onVal: { attacked: number; kept: number } };
  validationDetail: ValidationDetail | null;
}

export function writeRunConfig(dir: string, config: RunConfigFile): void {
  writeJson(join(dir, 'config.json'), config);
}

export function writeRunMetrics(dir: string, metrics: RunMetricsFile): void {
  writeJson(join(dir, 'metrics.json'), metrics);
}

/** A compute run's two files, read and checked; undefined when the folder holds no run (either file missing). */
export function readRunFiles(dir: string): { config: RunConfigFile; metrics: RunMetricsFile } | undefined {
  const configFile = join(dir, 'config.json');
  const metricsFile = join(dir, 'metrics.json');
  if (!existsSync(configFile) || !existsSync(metricsFile)) return undefined;
  const config = readObject(configFile);
  const metrics = readObject(metricsFile);
  // A defence run's folder has a config.json of its own and no metrics.json of this layout.
  if (!('run' in metrics)) return undefined;
  checkConfig(configFile, config);
  checkMetrics(metricsFile, metrics);
  return { config: config as unknown as RunConfigFile, metrics: metrics as unknown as RunMetricsFile };
}

function readObject(file: string): Record<string, unknown> {
  const parsed = readBoundedJson(file, { what: 'run file' });
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`${file}: not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** The checks of one file: each names the field and what it should be, so a damaged file is one line. */
function checker(file: string) {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${file}: "${field}" is not ${what} (a damaged run folder?)`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  return {
    fail,
    object(v: unknown, field: string): Record<string, unknown> {
      return isObject(v) ? v : fail(field, 'an object');
    },
    number(v: unknown, field: string): number {
      return typeof v === 'number' && Number.isFinite(v) ? v : fail(field, 'a number');
    },
    rate(v: unknown, field: string): number {
      return typeof v === 'number' && v >= 0 && v <= 1 ? v : fail(field, 'a rate in [0, 1]');
    },
    count(v: unknown, field: string): number {
      return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(field, 'a count');
    },
    text(v: unknown, field: string): string {
      return typeof v === 'string' ? v : fail(field, 'a string');
    },
    norm(v: unknown, field: string): Norm {
      return v === 2 || v === 'inf' ? v : fail(field, '2 or "inf"');
    },
  };
}

function checkConfig(file: string, c: Record<string, unknown>): void {
  const k = checker(file);
  k.text(c.model, 'model');
  k.text(c.method, 'method');
  k.norm(c.norm, 'norm');
  k.number(c.xi, 'xi');
  if (c.images !== undefined) k.count(c.images, 'images');
  if (c.valImages !== undefined) k.count(c.valImages, 'valImages');
  if (c.provenance !== undefined) k.object(c.provenance, 'provenance');
}

function checkMetrics(file: string, m: Record<string, unknown>): void {
  const k = checker(file);
  k.norm(m.norm, 'norm');
  k.number(m.xi, 'xi');
  k.number(m.normL2, 'normL2');
  k.number(m.normInf, 'normInf');
  const run = k.object(m.run, 'run');
  k.count(run.passes, 'run.passes');
  k.number(run.seconds, 'run.seconds');
  k.text(run.stopReason, 'run.stopReason');
  if (!Array.isArray(run.history)) k.fail('run.history', 'a list of passes');
  const problem = historyProblem(run.history as unknown[]);
  if (problem) throw new UsageError(`${file}: run.${problem} (a damaged run folder?)`);
  const evaluation = (v: unknown, field: string) => {
    const e = k.object(v, field);
    k.rate(e.foolingRate, `${field}.foolingRate`);
    k.count(e.images, `${field}.images`);
    for (const f of ['cleanAccuracy', 'perturbedAccuracy', 'foolingRateOnCorrect']) if (e[f] !== undefined) k.rate(e[f], `${field}.${f}`);
  };
  evaluation(m.onX, 'onX');
  if (m.onVal !== null) evaluation(m.onVal, 'onVal');
  if (m.randomNoiseOnVal !== null) {
    const r = k.object(m.randomNoiseOnVal, 'randomNoiseOnVal');
    for (const f of ['sameLp', 'sameL2']) {
      const b = k.object(r[f], `randomNoiseOnVal.${f}`);
      k.norm(b.norm, `randomNoiseOnVal.${f}.norm`);
      k.rate(b.mean, `randomNoiseOnVal.${f}.mean`);
    }
  }
  if (m.target !== null) {
    const t = k.object(m.target, 'target');
    k.text(t.name, 'target.name');
    for (const f of ['successOnX', 'successOnVal']) if (t[f] !== null) k.rate(t[f], `target.${f}`);
  }
  if (m.classDiscriminative !== undefined) {
    const cd = k.object(m.classDiscriminative, 'classDiscriminative');
    if (!Array.isArray(cd.classes)) k.fail('classDiscriminative.classes', 'a list of classes');
    (cd.classes as unknown[]).forEach((c, i) => k.count(c, `classDiscriminative.classes[${i}]`));
    const onVal = k.object(cd.onVal, 'classDiscriminative.onVal');
    k.rate(onVal.attacked, 'classDiscriminative.onVal.attacked');
    k.rate(onVal.kept, 'classDiscriminative.onVal.kept');
  }
  if (m.validationDetail !== null && m.validationDetail !== undefined) {
    const d = k.object(m.validationDetail, 'validationDetail');
    const conf = k.object(d.confidence, 'validationDetail.confidence');
    for (const [f, v] of Object.entries(conf)) k.number(v, `validationDetail.confidence.${f}`);
    if (!Array.isArray(d.perClass)) k.fail('validationDetail.perClass', 'a list of classes');
    (d.perClass as unknown[]).forEach((r, i) => {
      const row = k.object(r, `validationDetail.perClass[${i}]`);
      k.text(row.name, `validationDetail.perClass[${i}].name`);
      k.count(row.images, `validationDetail.perClass[${i}].images`);
      for (const f of ['rate', 'lo', 'hi']) k.rate(row[f], `validationDetail.perClass[${i}].${f}`);
    });
    if (!Array.isArray(d.confusions)) k.fail('validationDetail.confusions', 'a list of confusions');
    (d.confusions as unknown[]).forEach((r, i) => {
      const row = k.object(r, `validationDetail.confusions[${i}]`);
      k.text(row.fromName, `validationDetail.confusions[${i}].fromName`);
      k.text(row.toName, `validationDetail.confusions[${i}].toName`);
      k.count(row.images, `validationDetail.confusions[${i}].images`);
    });
  }
}
