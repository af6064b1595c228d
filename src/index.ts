/**
 * uap: universal adversarial perturbations for image classifiers (ONNX from PyTorch, TensorFlow.js, TFLite).
 * The public API: every export here is documented where it is declared (test/api.test.ts checks it)
 * and kept stable across minor versions. Internals that tools and tests reach for are in `uap/internal`
 * (src/internal.ts), with no such promise.
 */
import * as tfjs from './tf.js';
import { computeJob } from './jobs/compute.js';
import { accuracyJob, evaluateJob } from './jobs/scoring.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS, type Algorithm1Options } from './attacks/universal.js';

// Where models run, and the errors the library throws.
export { initBackend, tfjsEngine, type BackendName, type Engine } from './engine/backend.js';
export { UsageError, AbortedError } from './errors.js';
/**
 * The TensorFlow.js instance uap runs on (tfjs-core, layers, converter and the cpu backend, with uap's
 * wasm backend once `initBackend` chose it). Build the tensors that `evaluatePerturbation` and a
 * classifier's `logits` take with it (`tf.tensor4d(pixels, [n, h, w, c])`): tensors of another copy of
 * TensorFlow.js belong to another engine and its backend. The forward and gradient functions take plain
 * batches (`Batch`, `batchOf`).
 */
export const tf = tfjs;
// Models: loading, cards, and the one forward / gradient path every attack uses.
export { loadClassifier, findCard, bundledModels } from './import/load.js';
export { type ModelCard, readCard, validateCard } from './classifier/card.js';
export { type Classifier, type Differentiable, type FeatureModel, labelName } from './classifier/classifier.js';
export type { Runtime } from './engine/runtime.js';
export { batchOf, type Batch } from './math/batch.js';
export { batchOfTensor, tensorOfBatch } from './engine/tfjs/batchTensor.js';
export { tfjsRuntime, type TfjsGraph } from './engine/tfjs/tfjsRuntime.js';
export { forwardLogits, predictLabels, predictImages, vjp, vjpRows } from './classifier/compute.js';
export {
  candidateGradients,
  candidateGradientRows,
  type CandidateGradients,
  type GradientOptions,
  type GradientScratch,
} from './classifier/gradients.js';
// Images.
export { listDataset, loadImages, ImageSet, type ImageItem } from './data/dataset.js';
export { decodeImage } from './data/decode.js';
// Norms and noise.
export { type Norm, lpNorm, projectLp } from './math/lp.js';
export { randomPerturbation } from './math/noise.js';
// Attacks: DeepFool, Algorithm 1, SGD-UAP, GD-UAP, the method registry and success criteria.
export { deepfool, type DeepFoolOptions, type DeepFoolResult, type DeepFoolStatus } from './attacks/deepfool.js';
export {
  computeAlgorithm1,
  ALGORITHM1_DEFAULTS,
  type Algorithm1Options,
  type UniversalResult,
  type PassRecord,
  type Progress,
  type RunControl,
  type CheckpointStore,
} from './attacks/universal.js';
export { computeSgdUniversal, SGD_DEFAULTS, type SgdOptions, type SgdLoss } from './attacks/sgd.js';
export { computeDataFreeUniversal, DATA_FREE_DEFAULTS, type DataFreeOptions, type DataFreePrior } from './attacks/dataFree.js';
export { METHODS, METHOD_NAMES, methodOf, type Method, type CraftMethod, type AttackSettings } from './attacks/methods.js';
export { criterionOf, classDiscriminative, targetedAt, UNTARGETED, type Criterion } from './attacks/criterion.js';
// Scoring.
export { predictSet, foolingRate, evaluatePerturbation, type Evaluation } from './evaluation/scoring.js';
// Perturbation files: uap's own and other tools'.
export { readNpy, writeNpy } from './io/npy.js';
export {
  readArrayFile,
  toPixelsHwc,
  fromPixelsHwc,
  LAYOUTS,
  UNITS,
  type PerturbationFormat,
  type PerturbationLayout,
  type PerturbationUnits,
} from './perturbation/file.js';
export { writePerturbation } from './run/write.js';
export { folderCheckpoints } from './io/checkpoint.js';
// Whole jobs, as the CLI runs them: typed options in, a result out (and the files of the command).
export { computeJob, type ComputeJob, type ComputeSummary } from './jobs/compute.js';
export { evaluateJob, accuracyJob, type EvaluateJob, type AccuracyJob } from './jobs/scoring.js';
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
/**
 * The 0.1 name of `computeAlgorithm1`, the same function.
 * @deprecated Use `computeAlgorithm1` (it is Algorithm 1 alone; every method: `METHODS`).
 */
export const computeUniversal = computeAlgorithm1;
/**
 * The 0.1 name of `ALGORITHM1_DEFAULTS`, the same object.
 * @deprecated Use `ALGORITHM1_DEFAULTS`.
 */
export const UNIVERSAL_DEFAULTS = ALGORITHM1_DEFAULTS;
/**
 * The 0.1 name of `Algorithm1Options`, the same type.
 * @deprecated Use `Algorithm1Options`.
 */
export type UniversalOptions = Algorithm1Options;
export { transferJob, type TransferJob } from './jobs/transfer.js';
export { graphJob, baselineJob, type PerturbationAnalysisJob, type BaselineJob } from './jobs/perturbationAnalyses.js';
export { sweepSizeJob, normalsJob, type ModelAnalysisJob, type SweepSizeJob, type NormalsJob } from './jobs/modelAnalyses.js';
export { reproduceJob, type ReproduceJob } from './jobs/reproduce.js';
export { reportJob, type ReportJob } from './jobs/report.js';
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
} from './jobs/audit.js';
export type { JobControl } from './jobs/control.js';
export { loadPerturbation } from './perturbation/file.js';
export { loadSet } from './data/sets.js';
export {
  runFinetune,
  FINETUNE_DEFAULTS,
  type FinetuneOptions,
  type DefenceResult,
  type RoundRecord,
  type EpochRecord,
} from './defence/finetune.js';
export { finetuneJob, type FinetuneJob } from './jobs/finetune.js';
export { assetsDir } from './paths.js';
export { serveStudio } from './studio/server.js';
