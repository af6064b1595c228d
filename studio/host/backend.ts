/**
 * The browser host's choice of where models run: one of TF.js's browser backends (the Node host's
 * choice, ONNX Runtime or TF.js on wasm / cpu, is src/engine/backend.ts).
 */
import * as tf from '../../src/tf.js';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
// Importing a backend's package registers the backend with TF.js.
import { MathBackendWebGL } from '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import wasmUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreadedUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { tfjsProbe, closeEnough } from '../../src/engine/selfcheck.js';

/**
 * Sets TF.js's backend to the fastest one that reproduces the cpu backend's logits and input gradient
 * on the self-check net (WebGPU, then WebGL, then wasm; cpu when none does), passing over a
 * software-rendered GPU, and returns its name. `forced` (the page's ?backend=) is the only one tried,
 * software-rendered or not. `say` hears why a backend was passed over.
 */
export async function chooseBrowserBackend(forced: string | undefined, say: (message: string) => void): Promise<string> {
  // The .wasm binaries are the bundler's assets: point TF.js at them.
  setWasmPaths({
    'tfjs-backend-wasm.wasm': wasmUrl,
    'tfjs-backend-wasm-simd.wasm': wasmSimdUrl,
    'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedUrl,
  });
  tf.enableProdMode();
  await tf.setBackend('cpu');
  const ref = tfjsProbe();
  const gpu = 'gpu' in navigator ? ['webgpu'] : [];
  for (const b of forced ? [forced] : [...gpu, 'webgl', 'wasm']) {
    if (b === 'cpu') break;
    try {
      if (!(await tf.setBackend(b))) continue;
      await tf.ready();
      const got = tfjsProbe();
      if (closeEnough(got.logits, ref.logits, 1e-3) && closeEnough(got.dx, ref.dx, 1e-3)) {
        // Software WebGL (no GPU: SwiftShader, llvmpipe) runs these models ~15x slower than wasm.
        const renderer = b === 'webgl' ? webglRenderer() : b === 'webgpu' ? await webgpuAdapter() : '';
        if (!forced && /swiftshader|llvmpipe|software/i.test(renderer)) {
          say(`webgl is software-rendered (${renderer}); wasm is faster`);
          continue;
        }
        return b;
      }
      say(`${b}: failed the gradient self-check; trying the next backend`);
    } catch (e) {
      say(`${b}: unavailable (${(e as Error).message})`);
    }
  }
  await tf.setBackend('cpu');
  return 'cpu';
}

/** The renderer's name of the WebGL backend TF.js has now, when the browser tells it. */
function webglRenderer(): string {
  try {
    const backend = tf.backend();
    if (!(backend instanceof MathBackendWebGL)) return '';
    const gl = backend.gpgpu.gl;
    const ext = gl.getExtension('WEBGL_debug_renderer_info');
    return String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  } catch {
    return '';
  }
}

/** The WebGPU adapter's description ("software" when the browser says it is a fallback one). */
async function webgpuAdapter(): Promise<string> {
  try {
    const gpu = (
      navigator as unknown as { gpu: { requestAdapter(): Promise<{ info?: Record<string, unknown>; isFallbackAdapter?: boolean } | null> } }
    ).gpu;
    const a = await gpu.requestAdapter();
    if (!a) return '';
    const info = a.info ?? {};
    const text = ['vendor', 'architecture', 'device', 'description']
      .map((k) => info[k])
      .filter(Boolean)
      .join(' ');
    return a.isFallbackAdapter || info.isFallbackAdapter ? `software (${text})` : text;
  } catch {
    return '';
  }
}
