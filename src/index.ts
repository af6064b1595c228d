/** uap: universal adversarial perturbations for image classifiers (ONNX from PyTorch, TensorFlow.js, TFLite). */
export { initBackend, type BackendName } from './backend.js';
export { UsageError, AbortedError } from './errors.js';
export { type Norm, parseNorm, lpNorm, batchNorm, projectLp } from './math/lp.js';
export { Rng, passSeed } from './math/random.js';
export { randomPerturbation } from './math/noise.js';
export { takeRows } from './math/rows.js';
export { perturb } from './math/perturb.js';
export { type Classifier, labelName } from './model/classifier.js';
export { forwardLogits, predictLabels, predictImages, vjp, vjpRows, argmaxRows } from './model/compute.js';
export type { Runtime } from './model/runtime.js';
export { type Net, type NetNode, type NodeOp } from './model/net.js';
export { exportOnnx, OnnxUnsupported } from './model/onnx/export.js';
export { type ModelCard, readCard, validateCard } from './model/card.js';
export { loadClassifier, findCard, bundledModels } from './model/load.js';
export { candidateGradients, candidateGradientRows, candidateGradientsLoop } from './model/gradients.js';
export { listDataset, loadImages, ImageSet, type ImageItem } from './data/dataset.js';
export { decodeImage } from './data/decode.js';
export { deepfool, type DeepFoolOptions, type DeepFoolResult, type DeepFoolStatus } from './attacks/deepfool.js';
export { computeSgdUniversal, lossCotangent, SGD_DEFAULTS, type SgdOptions, type SgdLoss } from './attacks/sgd.js';
export { computeDataFreeUniversal, DATA_FREE_DEFAULTS, type DataFreeOptions, type DataFreePrior } from './attacks/dataFree.js';
export { METHODS, METHOD_NAMES, methodOf, type Method, type CraftMethod, type AttackSettings } from './attacks/methods.js';
export { criterionOf, classDiscriminative, targetedAt, UNTARGETED, type Criterion } from './attacks/criterion.js';
export { featureModel, convLayers } from './model/features.js';
export type { FeatureModel, Differentiable } from './model/classifier.js';
export { uatEpoch, type UatSettings } from './defence/uat.js';
export { runPasses, targetSuccessRate, type PassMethod, type PassContext, type PassOptions } from './attacks/passes.js';
export {
  computeUniversal, validateUniversalOptions, UNIVERSAL_DEFAULTS,
  type UniversalOptions, type UniversalResult, type PassRecord, type Progress, type RunControl,
} from './attacks/universal.js';
export { predictSet, foolingRate, scorePredictions, evaluatePerturbation, type Evaluation } from './model/scoring.js';
export { readNpy, writeNpy } from './io/npy.js';
export {
  readArrayFile, toPixelsHwc, fromPixelsHwc, encodeNpz, LAYOUTS, UNITS,
  type PerturbationFormat, type PerturbationLayout, type PerturbationUnits,
} from './io/perturbationFile.js';
export { writePerturbation, writeExamples } from './io/run.js';
export { runCompute, runEvaluate, loadPerturbation, OWN_FORMAT, loadSet, loadModel, resolveTarget, defaultXi, defaultData, randomBaseline } from './pipeline.js';
export { assetsDir } from './paths.js';
export { runFinetune, defenceMarkdown, FINETUNE_DEFAULTS, type FinetuneJob, type FinetuneOptions, type DefenceResult, type RoundRecord, type EpochRecord } from './defence/finetune.js';
export { drawPerturbations, applyDraws, SAMPLING_DEFAULTS, type SamplingOptions, type Draw } from './defence/sampling.js';
export { loadTrainable, saveTrainable, refuseUntrainable, type Trainable } from './defence/trainable.js';
export { enableWasmTraining } from './model/wasmTraining.js';
export { netClassifier, preprocessNodes, outputNodes, cardAdapters } from './model/adapters.js';
export { encodeNpy, decodeNpy } from './io/npy.js';
export { serveStudio, studioCatalog, studioHandler } from './studio/server.js';
