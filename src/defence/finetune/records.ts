import { existsSync } from 'node:fs';
import { readBoundedText } from '../../io/bounded.js';
import { join } from 'node:path';
import { UsageError } from '../../errors.js';
import { writeJson, writeText } from '../../run/write.js';
import { methodName, pct } from '../../report/format.js';
import { RECORDS_FILE, TABLE_FILE, TRAINING_LOG } from './folder.js';
import type { FinetuneOptions } from './options.js';

/** One training epoch: learning rate, loss, clean validation accuracy, the pool's fooling rate, time, and whether the accuracy guard undid it. */
export interface EpochRecord {
  epoch: number;
  learningRate: number;
  /** Mean training cross-entropy over the epoch. */
  loss: number;
  /** Clean top-1 accuracy on the validation images after the epoch. */
  cleanAccuracy: number;
  /** Fooling rate on the validation images of the pool's perturbations (image i gets member i mod P). */
  poolFoolingRate: number;
  seconds: number;
  /** False for an epoch undone because clean accuracy fell too far. */
  kept: boolean;
}

/** One round of fine-tuning (round 0: the original model): clean accuracy, a fresh perturbation's fooling rate, the previous round's perturbation on it, and its epochs. */
export interface RoundRecord {
  /** 0: the original model. */
  round: number;
  /** The model this row measures: the job's model as given (round 0), else the card file of the fine-tuned model. */
  card: string;
  cleanAccuracy: number;
  /** A fresh universal perturbation crafted on this round's model: fooling rate on the validation images. */
  foolingRate: number;
  foolingRateOnX: number;
  /** The previous round's perturbation on this model (does the old attack still work?). */
  previousFoolingRate: number | null;
  epochs: EpochRecord[];
  seconds: number;
}

/** What fine-tuning gives: its configuration, one record per round (round 0 is the original model), and the output folder. */
export interface DefenceResult {
  config: Record<string, unknown>;
  rounds: RoundRecord[];
  out: string;
}

/** The rounds table the paper describes: clean accuracy and a fresh UAP's fooling rate, per round. */
export function defenceMarkdown(d: DefenceResult): string {
  const a = d.config.attack as { norm: number | string; xi: number };
  const lines = [
    `# Defence: ${(d.config.finetune as FinetuneOptions).defence === 'uat' ? 'universal adversarial training' : 'fine-tuning on universal perturbations'} — ${String(d.config.model)}`,
    '',
    `Attack: ${methodName(d.config)}, ${a.norm === 2 ? 'L2' : 'Linf'} xi = ${a.xi}; ${String(d.config.images)} training/crafting images, ${String(d.config.valImages)} validation images.`,
    '',
    "| round | clean accuracy | fresh UAP fooling rate | previous round's UAP | epochs kept | seconds |",
    '|---|---|---|---|---|---|',
    ...d.rounds.map(
      (r) =>
        `| ${r.round === 0 ? '0 (original)' : r.round} | ${pct(r.cleanAccuracy)} | ${pct(r.foolingRate)} | ${pct(r.previousFoolingRate)} | ${r.round === 0 ? '-' : r.epochs.filter((e) => e.kept).length} | ${r.seconds.toFixed(0)} |`,
    ),
    '',
  ];
  return lines.join('\n');
}

/** The records and the table, each written atomically: after every round, so a kill loses at most the round under way. */
export function writeRecords(d: DefenceResult): void {
  writeJson(join(d.out, RECORDS_FILE), d);
  writeText(join(d.out, TABLE_FILE), defenceMarkdown(d));
}

type Check = (x: unknown) => boolean;

const isNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const isRate: Check = (x) => isNumber(x) && x >= 0 && x <= 1;

const EPOCH_FIELDS: Record<keyof EpochRecord, Check> = {
  epoch: (x) => Number.isInteger(x) && (x as number) >= 1,
  learningRate: (x) => isNumber(x) && x > 0,
  // A diverged epoch's NaN loss is written as null (JSON has no NaN); the accuracy guard undid it.
  loss: (x) => x === null || isNumber(x),
  cleanAccuracy: isRate,
  poolFoolingRate: isRate,
  seconds: isNumber,
  kept: (x) => typeof x === 'boolean',
};

/** Round `index`'s fields: the rows are numbered 0, 1, ... in order. */
const roundFields = (index: number): Record<keyof RoundRecord, Check> => ({
  round: (x) => x === index,
  card: (x) => typeof x === 'string' && x.length > 0,
  cleanAccuracy: isRate,
  foolingRate: isRate,
  foolingRateOnX: isRate,
  previousFoolingRate: (x) => x === null || isRate(x),
  epochs: Array.isArray,
  seconds: isNumber,
});

/** A field of a saved record that fails its check: its path (rounds[1].epochs[0].loss) and what it holds. */
interface BadField {
  path: string;
  value: unknown;
}

/** The first field of `value` that fails its check (`value` itself when it is no object); undefined when all pass. */
function badField(value: unknown, fields: Record<string, Check>, at: string): BadField | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { path: at, value };
  const row = value as Record<string, unknown>;
  const bad = Object.keys(fields).find((k) => !fields[k](row[k]));
  return bad === undefined ? undefined : { path: `${at}.${bad}`, value: row[bad] };
}

/** The first malformed field of a list of epoch records. */
const badEpochs = (epochs: unknown[], at: string) => epochs.map((e, i) => badField(e, EPOCH_FIELDS, `${at}[${i}]`)).find(Boolean);

/** The first malformed field of a list of round records. */
function badRounds(rounds: unknown[]): BadField | undefined {
  for (const [i, row] of rounds.entries()) {
    const bad = badField(row, roundFields(i), `rounds[${i}]`) ?? badEpochs((row as RoundRecord).epochs, `rounds[${i}].epochs`);
    if (bad) return bad;
  }
  return undefined;
}

/** What a previous run wrote, refused whole when it cannot be trusted: continuing from a damaged record would not be the same run. */
function refuseRecord(file: string, problem: string): never {
  throw new UsageError(`{resume}: ${file}: ${problem}; start afresh without {resume} or with another {out}`);
}

function refuseField(file: string, { path, value }: BadField): never {
  refuseRecord(file, `${path} is missing or malformed (${JSON.stringify(value) ?? 'absent'})`);
}

/** A JSON file a previous run wrote, parsed; an unreadable or unparsable one is refused. */
function readRecordFile(file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readBoundedText(file, { what: 'run file' }));
  } catch (e) {
    refuseRecord(file, `unreadable (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) refuseRecord(file, 'expected a JSON object');
  return value as Record<string, unknown>;
}

/**
 * The rounds a previous run in `out` finished, from its records, for a resume: refused when the records
 * are unreadable, were made with another configuration, or hold a malformed round.
 */
export function resumedRounds(out: string, config: Record<string, unknown>): RoundRecord[] {
  const file = join(out, RECORDS_FILE);
  const saved = readRecordFile(file);
  if (JSON.stringify(saved.config) !== JSON.stringify(config))
    throw new UsageError(
      `{resume}: ${file} was made with other settings (model, data or options differ); use another {out} or the same settings`,
    );
  if (!Array.isArray(saved.rounds)) refuseField(file, { path: 'rounds', value: saved.rounds });
  const bad = badRounds(saved.rounds);
  if (bad) refuseField(file, bad);
  return saved.rounds as RoundRecord[];
}

/** The epochs a round's model folder records (undefined when it has no log yet), refused when malformed. */
export function readTrainingLog(modelDir: string): EpochRecord[] | undefined {
  const file = join(modelDir, TRAINING_LOG);
  if (!existsSync(file)) return undefined;
  const saved = readRecordFile(file);
  if (!Array.isArray(saved.epochs)) refuseField(file, { path: 'epochs', value: saved.epochs });
  const bad = badEpochs(saved.epochs, 'epochs');
  if (bad) refuseField(file, bad);
  return saved.epochs as EpochRecord[];
}

/** Writes a round's epoch log into a model folder being saved. */
export function writeTrainingLog(modelDir: string, epochs: EpochRecord[]): void {
  writeJson(join(modelDir, TRAINING_LOG), { epochs });
}
