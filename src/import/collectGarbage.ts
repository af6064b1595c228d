import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/**
 * A full garbage collection now. For the one moment it pays: a large model's weights just let go by
 * the main thread (ONNX Runtime holds them). V8 collects when the JavaScript heap or its own external
 * memory grows, and what grows next is ONNX Runtime's native memory, which V8 does not see, so the
 * dropped weights would stay resident through the first gradients and add a copy of the weights to the
 * peak (bench:onnx's memory table). Node exposes gc() only behind --expose-gc; the flag set at run time
 * takes effect in a new context, which hands the function over.
 */
export function collectGarbage(): void {
  if (!gc) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = () => undefined;
    }
  }
  gc();
}
