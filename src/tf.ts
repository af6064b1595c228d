/**
 * The parts of TensorFlow.js uap uses, as one namespace: tensors and ops (tfjs-core), LayersModels
 * (tfjs-layers), GraphModels (tfjs-converter) and the pure-JS cpu backend (the reference every other
 * backend is checked against). The wasm backend is registered where it is chosen (backend.ts); the
 * studio adds WebGL / WebGPU. Depending on these packages rather than the @tensorflow/tfjs umbrella
 * keeps WebGL, tfjs-data and core-js (180 MB) out of an installation.
 */
export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-layers';
export { loadGraphModel, GraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's Node bundle leaves out the gradient functions and chained methods (x.reshape(...)):
// scripts/bundle-tfjs.mjs builds them from its sources, and these type-only imports bring in the
// matching declarations.
import './generated/tfjs-registrations.js';
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import type {} from '@tensorflow/tfjs-core/dist/register_all_gradients.js';
