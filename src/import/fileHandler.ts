import { readBoundedAsync } from '../io/bounded.js';
import { writeAtomic } from '../io/atomic.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '../tf.js';
import { UsageError } from '../errors.js';

interface ModelJson {
  modelTopology?: unknown;
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  signature?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
}

/**
 * Reads a TF.js model.json and its weight shards from the local disk (TF.js itself only fetches
 * over HTTP without tfjs-node, which cannot be installed offline).
 */
export function fileHandler(modelJsonPath: string): tf.io.IOHandler {
  return {
    load: async () => {
      if (!existsSync(modelJsonPath)) throw new UsageError(`model ${modelJsonPath}: file not found`);
      let json: ModelJson;
      try {
        json = JSON.parse((await readBoundedAsync(modelJsonPath, { what: 'model', kind: 'text' })).toString('utf8')) as ModelJson;
      } catch (e) {
        if (e instanceof UsageError) throw e;
        throw new UsageError(`model ${modelJsonPath}: not a valid model.json (${(e as Error).message})`);
      }
      if (!json.modelTopology) throw new UsageError(`model ${modelJsonPath}: no "modelTopology" (is this a TF.js model.json?)`);
      const dir = dirname(modelJsonPath);
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of json.weightsManifest ?? []) {
        specs.push(...group.weights);
        for (const p of group.paths) {
          const f = join(dir, p);
          if (!existsSync(f)) throw new UsageError(`model ${modelJsonPath}: weight shard ${f} not found`);
          buffers.push(await readBoundedAsync(f, { what: `model ${modelJsonPath}: weight shard`, kind: 'model' }));
        }
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
      return {
        modelTopology: json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        weightSpecs: specs,
        weightData,
        signature: json.signature as tf.io.ModelArtifacts['signature'],
        userDefinedMetadata: json.userDefinedMetadata as tf.io.ModelArtifacts['userDefinedMetadata'],
      };
    },
  };
}

/**
 * Writes a LayersModel as model.json + weights.bin into `dir` (the files fileHandler reads). The
 * JSON goes last, by rename, so a kill mid-save never leaves a model.json naming missing weights.
 */
export function fileSaver(dir: string): tf.io.IOHandler {
  return {
    save: async (artifacts) => {
      const weights = new tf.io.CompositeArrayBuffer(artifacts.weightData).slice();
      writeAtomic(join(dir, 'weights.bin'), new Uint8Array(weights));
      const json: ModelJson = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? undefined,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      writeAtomic(join(dir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.byteLength } };
    },
  };
}
