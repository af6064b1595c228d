import * as tf from '../../tf.js';
import { convFilterGradient, depthwiseInputGradient, maxPoolGradient, type Padding } from './inputgrad.js';
import { UsageError } from '../../errors.js';

/**
 * Makes TF.js's wasm backend able to TRAIN convolutional LayersModels. It has forward convolutions
 * (XNNPACK) but no kernels for the filter gradients (Conv2DBackpropFilter,
 * DepthwiseConv2dNativeBackpropFilter) or the depthwise input gradient, and TF.js has no fallback:
 * training threw "kernel not registered". Each missing kernel is registered here as the equivalent
 * forward convolutions (inputgrad.ts). The pure-JS cpu backend has these kernels but is orders of
 * magnitude slower.
 */

type Attrs = Record<string, unknown>;

/** A layer this path cannot train: the user's model, so a one-line message and a way out. */
function unsupported(what: string): never {
  throw new UsageError(`fine-tuning on wasm: ${what} is not supported; rerun with {backend} cpu (slower, every kernel)`);
}

function padding(kernel: string, pad: unknown): Padding {
  if (pad === 'same' || pad === 'valid') return pad;
  return unsupported(`${kernel} with padding ${JSON.stringify(pad)}`);
}

function pair(v: unknown): [number, number] {
  return typeof v === 'number' ? [v, v] : (v as [number, number]);
}

type Compute = (inputs: Record<string, tf.Tensor>, attrs: Attrs) => tf.Tensor;

/** A wasm kernel function computing with TF.js ops. */
function asOps(compute: Compute): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const engine = tf.engine();
    // The backend counts references per buffer, one per tensor: every handle made here takes one
    // (incRef) so that disposing it gives that one back and never frees the caller's data.
    const incRef = (id: tf.DataId) => (backend as unknown as { incRef(id: tf.DataId): void }).incRef(id);
    const out = tf.tidy(() => {
      const wrapped: Record<string, tf.Tensor> = {};
      for (const [k, info] of Object.entries(inputs)) {
        incRef((info as tf.TensorInfo).dataId);
        wrapped[k] = engine.makeTensorFromTensorInfo(info as tf.TensorInfo);
      }
      return compute(wrapped, attrs as Attrs);
    });
    // The tensor the engine makes from the returned info keeps the reference our handle gives up.
    incRef(out.dataId);
    const info = { dataId: out.dataId, shape: out.shape, dtype: out.dtype };
    out.dispose();
    return info;
  };
}

function registerAsOps(name: string, compute: Compute): void {
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: asOps(compute) });
}

let registered = false;

/** Idempotent; call before training on the wasm backend (harmless on others). */
export function enableWasmTraining(): void {
  if (registered) return;
  registered = true;
  const conv = (kind: 'conv' | 'depthwise') => (inputs: Record<string, tf.Tensor>, a: Attrs) => {
    if (a.dataFormat !== undefined && a.dataFormat !== 'NHWC') unsupported(`a ${kind} convolution in ${String(a.dataFormat)} layout`);
    const d = pair(a.dilations ?? 1);
    if (d[0] !== 1 || d[1] !== 1) unsupported(`a dilated ${kind} convolution`);
    if (kind === 'depthwise' && (a.filterShape as number[])[3] !== 1) unsupported('a depthwise convolution with depth multiplier > 1');
    return convFilterGradient(
      kind,
      inputs.x as tf.Tensor4D,
      inputs.dy as tf.Tensor4D,
      a.filterShape as number[],
      pair(a.strides),
      padding(kind, a.pad),
    );
  };
  registerAsOps('Conv2DBackpropFilter', conv('conv'));
  registerAsOps('DepthwiseConv2dNativeBackpropFilter', conv('depthwise'));
  // Not missing but wrong whenever pooled values can be negative: replaced (explicit paddings keep the original).
  const maxPoolGrad = tf.getKernel('MaxPoolGrad', 'wasm');
  if (maxPoolGrad) {
    const replacement = asOps((inputs, a) =>
      maxPoolGradient(
        inputs.dy as tf.Tensor4D,
        inputs.input as tf.Tensor4D,
        inputs.output as tf.Tensor4D,
        pair(a.filterSize),
        pair(a.strides),
        a.pad as Padding,
      ),
    );
    tf.unregisterKernel('MaxPoolGrad', 'wasm');
    tf.registerKernel({
      ...maxPoolGrad,
      kernelFunc: (args) =>
        (args.attrs as Attrs).pad === 'same' || (args.attrs as Attrs).pad === 'valid' ? replacement(args) : maxPoolGrad.kernelFunc(args),
    });
  }
  registerAsOps('DepthwiseConv2dNativeBackpropInput', (inputs, a) =>
    depthwiseInputGradient(
      inputs.dy as tf.Tensor4D,
      inputs.filter as tf.Tensor4D,
      a.inputShape as number[],
      pair(a.strides),
      padding('depthwise', a.pad),
    ),
  );
}
