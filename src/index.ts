/**
 * uap: universal adversarial perturbations for image classifiers (ONNX from PyTorch, TensorFlow.js, TFLite).
 * The public API, kept small: models, images, the forward and gradient functions, the attacks, scoring
 * and perturbation files. Every export here is documented where it is declared (test/api.test.ts checks
 * it) and kept stable across minor versions. Whole jobs, as the CLI runs them, are in `uap/jobs`
 * (src/jobs/index.ts); the building blocks tools and tests reach for are in `uap/internal`
 * (src/internal.ts), with no stability promise.
 */
import * as tfjs from './tf.js';
import { computeAlgorithm1, ALGORITHM1_DEFAULTS, type Algorithm1Options } from './attacks/universal.js';
import { tfjsBackend, type Backend } from './engine/backend.js';

// Where models run, and the errors the library throws.
export { initBackend, tfjsBackend, type BackendName, type Backend } from './engine/backend.js';
/**
 * The 0.1 name of `Backend`, the same type.
 * @deprecated Use `Backend` (chosen with `initBackend`; the CLI's `--backend`).
 */
export type Engine = Backend;
/**
 * The 0.1 name of `tfjsBackend`, the same function.
 * @deprecated Use `tfjsBackend`.
 */
export const tfjsEngine = tfjsBackend;
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
export { candidateGradients, candidateGradientRows, type CandidateGradients, type GradientOptions } from './classifier/gradients.js';
// Images.
export { listDataset, loadImages, ImageSet, type ImageItem } from './data/dataset.js';
export { loadSet } from './data/sets.js';
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
// Scoring.
export { predictSet, foolingRate, evaluatePerturbation, type Evaluation } from './evaluation/scoring.js';
// Perturbation files: uap's own and other tools'.
export { readNpy, writeNpy } from './io/npy.js';
export {
  loadPerturbation,
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
export { assetsDir } from './paths.js';
// The studio, served from a host application.
export { serveStudio } from './studio/server.js';
