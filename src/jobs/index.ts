/**
 * `uap/jobs`: whole jobs, as the CLI runs them: typed options in, a result out, the command's files
 * written on the way (every job is named `<command>Job`). Documented where declared and kept stable
 * across minor versions, like `uap`; what a job is made of is in `uap` (the parts) and `uap/internal`.
 */
import { computeJob } from './compute.js';
import { accuracyJob, evaluateJob } from './scoring.js';

export { computeJob, type ComputeJob, type ComputeSummary, type ComputeControl } from './compute.js';
export { evaluateJob, accuracyJob, type EvaluateJob, type AccuracyJob, type ScoreProgress } from './scoring.js';
export { transferJob, type TransferJob } from './transfer.js';
export { graphJob, baselineJob, type PerturbationAnalysisJob, type BaselineJob } from './perturbationAnalyses.js';
export { sweepSizeJob, normalsJob, type ModelAnalysisJob, type SweepSizeJob, type NormalsJob } from './modelAnalyses.js';
export { finetuneJob, type FinetuneJob } from './finetune.js';
export { reproduceJob, type ReproduceJob } from './reproduce.js';
export { reportJob, type ReportJob } from './report.js';
export {
  auditJob,
  AUDIT_SCHEMA,
  AUDIT_METHODS,
  type AuditJob,
  type AuditResult,
  type AuditRun,
  type AuditBudget,
  type AuditBudgetResult,
  type AuditComparison,
} from './audit.js';
export type { JobControl } from './control.js';
export type { QueueOption } from '../scale/coordinator.js';
// The defence without its report (finetuneJob writes report.html too).
export {
  runFinetune,
  FINETUNE_DEFAULTS,
  type FinetuneOptions,
  type FinetuneControl,
  type DefenceJob,
  type DefenceResult,
  type RoundRecord,
  type EpochRecord,
} from '../defence/finetune.js';
/**
 * The 0.1 name of `computeJob`, the same function.
 * @deprecated Use `computeJob` (every job is named `<command>Job`).
 */
export const runCompute = computeJob;
/**
 * The 0.1 name of `evaluateJob`, the same function.
 * @deprecated Use `evaluateJob`.
 */
export const runEvaluate = evaluateJob;
/**
 * The 0.1 name of `accuracyJob`, the same function.
 * @deprecated Use `accuracyJob`.
 */
export const runAccuracy = accuracyJob;
