/**
 * `uap/internal`: building blocks the CLI, the studio, the benchmarks and the tests use, exported for
 * tools built on uap. No stability promise: these change with the code. The public API is `uap`
 * (src/index.ts) with `uap/jobs` (src/jobs/index.ts), which this module also re-exports so that one
 * import serves all three.
 */
export * from './index.js';
export * from './jobs/index.js';
export type { GradientScratch } from './classifier/gradients.js';
export { localExecutor, type Executor, type SetPlace, type OnSet } from './run/executor.js';
export { executorFor, queueExecutor, withExecutor } from './scale/coordinator.js';
export { parseNorm, batchNorm } from './math/lp.js';
export { Rng, passSeed } from './math/random.js';
export { takeRows } from './math/rows.js';
export { perturb } from './math/perturb.js';
export { argmaxRows } from './classifier/compute.js';
export { type Net, type NetNode, type NodeOp } from './engine/net.js';
export { exportOnnx, OnnxUnsupported } from './engine/onnx/export.js';
export { candidateGradientsLoop, scratchRows } from './classifier/gradients.js';
export { batchOfTensor, tensorOfBatch } from './engine/tfjs/batchTensor.js';
export { netClassifier, preprocessNodes, outputNodes, cardAdapters } from './import/adapters.js';
export { featureModel, convLayers } from './classifier/features.js';
export { enableWasmTraining } from './engine/tfjs/wasmTraining.js';
export { lossCotangent } from './attacks/sgd.js';
export { runPasses, targetSuccessRate, type PassMethod, type PassContext, type PassOptions } from './attacks/passes.js';
export { validateAlgorithm1Options } from './attacks/universal.js';
export { scorePredictions } from './evaluation/scoring.js';
export { encodeNpy, decodeNpy } from './io/npyCodec.js';
export { encodeNpz } from './perturbation/file.js';
export { writeExamples } from './run/write.js';
export { OWN_FORMAT } from './perturbation/file.js';
export { loadModel } from './import/load.js';
export { resolveTarget } from './classifier/classifier.js';
export { defaultXi } from './math/lp.js';
export { defaultData } from './data/sets.js';
export { randomBaseline } from './evaluation/noiseScore.js';
export { uatEpoch, type UatSettings } from './defence/uat.js';
export { defenceMarkdown } from './defence/finetune.js';
export { drawPerturbations, applyDraws, SAMPLING_DEFAULTS, type SamplingOptions, type Draw } from './defence/sampling.js';
export { loadTrainable, saveTrainable, refuseUntrainable, type Trainable } from './defence/trainable.js';
export { studioCatalog, studioHandler } from './studio/server.js';
