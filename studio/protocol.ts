/** Messages between the studio page and its worker (all computation runs in the worker). */
import type { BrowserCard, BrowserDataset, StudioCatalog } from '../src/studio/catalog.js';
import type { PassRecord, Progress } from '../src/attacks/passes.js';
import type { Method } from '../src/attacks/methods.js';
import type { FormControl } from '../src/attacks/options.js';

export type { BrowserCard, BrowserDataset, StudioCatalog, PassRecord, Progress, Method };

export interface AttackSettings {
  method: Method;
  norm: 2 | 'inf';
  xi: number;
  maxPasses: number;
  delta: number;
  seed: number;
  /** Class index, or undefined for untargeted. */
  target?: number;
}

/** A model the user dropped: model.json + weight shards, or a .tflite; always with its card.json. */
export interface DroppedModel {
  card: BrowserCard;
  files: File[];
}

export type ToWorker =
  | {
      type: 'load';
      model: BrowserCard | DroppedModel;
      images: { url?: string; file?: File; label?: number }[];
      /** Force a TF.js backend (the page's ?backend=). */ backend?: string;
    }
  | { type: 'start'; settings: AttackSettings }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  | { type: 'scale'; factor: number }
  /** One held-out image (its index among the shown ones) clean and with factor x v: the large view. */
  | { type: 'inspect'; shown: number; factor: number }
  | { type: 'perturbation'; bytes: ArrayBuffer; name: string };

/** Fooling rates on the held-out images: v, and random noise of v's Linf and L2 norms (the comparison that teaches). */
export interface HeldOutRates {
  foolingRate: number;
  noiseLinf: number;
  noiseL2: number;
}

export interface ModelInfo {
  name: string;
  inputShape: [number, number, number];
  numClasses: number;
  labels?: string[];
}

export type FromWorker =
  | { type: 'status'; message: string }
  /** Loaded: the images are split into crafting images and held-out images; the grid shows held-out ones (indices into them). */
  | {
      type: 'ready';
      backend: string;
      model: ModelInfo;
      images: { craft: number; heldOut: number };
      pixels: Uint8Array;
      shown: number[];
      cleanPred: Int32Array;
      labels?: Int32Array;
      /** The library's crafting methods (its registry), for the method menu. */
      methods: { name: Method; title: string }[];
      /** The attack controls as the library's option schema bounds them. */
      controls: ControlSpecs;
    }
  | { type: 'progress'; p: Progress }
  /** A pause took effect: the run waits between batches, and nothing moves until resume. */
  | { type: 'held' }
  /** After a pass: v, its fooling rates (crafting images in rec, held-out images), random noise of v's norms on the held-out images, and the held-out labels with v. */
  | {
      type: 'pass';
      rec: PassRecord;
      heldOut: HeldOutRates;
      v: Float32Array;
      advPred: Int32Array;
      /** The fooling graph, empty until GRAPH_MIN_FOOLED images are fooled; `fooled` counts them (crafting and held-out). */
      graph: { svg: string; fooled: number };
      /** The per-pass curve (empty for a loaded perturbation). */
      curveSvg: string;
    }
  | { type: 'done'; metrics: Record<string, unknown>; v: Float32Array }
  /** Stop pressed: the run ended early; v of the last full pass (if any) stays. */
  | { type: 'stopped'; message: string; metrics?: Record<string, unknown> }
  | { type: 'scaled'; factor: number; foolingRate: number; normL2: number; normInf: number; advPred: Int32Array; v: Float32Array }
  | { type: 'inspected'; shown: number; factor: number; v: Float32Array | null; clean: TopLabel[]; perturbed: TopLabel[] }
  | { type: 'error'; message: string };

/** Fooled images the fooling graph waits for: with fewer, it is a handful of unconnected pairs that teach nothing. */
export const GRAPH_MIN_FOOLED = 20;

/** A class and its softmax probability. */
export interface TopLabel {
  label: number;
  p: number;
}

/** The studio's attack controls that the schema describes (`formControl` of src/attacks/options.ts). */
export interface ControlSpecs {
  xi: FormControl;
  maxPasses: FormControl;
  seed: FormControl;
  norm: FormControl;
}
