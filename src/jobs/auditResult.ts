import type { Norm } from '../math/lp.js';

/** What audit.json holds (docs/audit.md): the result of `uap audit`, read by its formats and by `--compare`. */

/** Version of audit.json's layout (docs/audit.md): a reader refuses another. */
export const AUDIT_SCHEMA = 'uap-audit/1';

/** A norm budget: the norm and the radius in pixels of [0, 255] images. */
export interface AuditBudget {
  norm: Norm;
  xi: number;
}

/** One method's perturbation at one budget, scored on the held-out images. */
export interface AuditRun {
  key: string;
  method: string;
  /** Its run folder (relative to the audit's folder). */
  run: string;
  heldOutImages: number;
  heldOutFoolingRate: number;
  interval: [number, number];
  cleanAccuracy: number | null;
  perturbedAccuracy: number | null;
  /** Labels the fooled held-out images receive, most first (share of the fooled). */
  dominantLabels: { label: number; name: string; share: number }[];
  /** Random noise of this v's own Lp norm (at most the budget's radius) on the same images, mean of 3 draws. */
  noiseFoolingRate: number | null;
  craftSeconds: number;
  passes: number;
  stopReason: string;
  target?: { label: number; name: string };
}

/** One budget's verdict: its worst case over the methods, every run, and noise of the budget. */
export interface AuditBudgetResult extends AuditBudget {
  /** pass / fail against failAbove; 'reported' without a threshold. */
  verdict: 'pass' | 'fail' | 'reported';
  /** Random noise of exactly the budget's norm and radius on the held-out images (mean of 3 draws): what no structure gives. */
  noiseFoolingRate: number;
  worst: AuditRun;
  runs: AuditRun[];
}

/** This audit beside an earlier one (`--compare`), budget by budget. */
export interface AuditComparison {
  against: string;
  budgets: { norm: Norm; xi: number; before: RateCI; after: RateCI; change: 'worse' | 'better' | 'within the noise' }[];
  /** Some budget got worse, with intervals apart. */
  regression: boolean;
}

export interface RateCI {
  rate: number;
  interval: [number, number];
  images: number;
}

/** audit.json (schema AUDIT_SCHEMA, docs/audit.md): the settings, fingerprints, every budget's verdict and runs. */
export interface AuditResult {
  schema: typeof AUDIT_SCHEMA;
  uapVersion: string;
  date: string;
  command: string;
  /** sha256: of the model's files (null for a model without files); fingerprint: of the files with the input shape, class count and preprocessing. */
  model: { spec: string; name: string; sha256: string | null; fingerprint: string; inputShape: number[]; numClasses: number };
  /** Passes per run when fixed (--max-passes), else null (runs stopped on the clock). */
  maxPasses: number | null;
  data: { crafting: { images: number; listSha256: string | null }; heldOut: { images: number; listSha256: string | null } };
  seed: number;
  budgetSeconds: number;
  failAbove: number | null;
  methods: string[];
  budgets: AuditBudgetResult[];
  verdict: 'pass' | 'fail' | 'reported';
  seconds: number;
  compare?: AuditComparison;
}
