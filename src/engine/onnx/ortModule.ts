import { createRequire } from 'node:module';

/**
 * Where onnxruntime-node's entry file lies, for the code that loads it in another thread or process
 * (the session workers, the placement probe, the load's reference run): they `require` it by path, as
 * their plain-JS sources cannot resolve the package from where they are evaluated.
 */
export function ortModulePath(): string {
  return createRequire(import.meta.url).resolve('onnxruntime-node');
}
