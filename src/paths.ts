import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (this file is at src/paths.ts, or dist/src/paths.js once built). */
export const PROJECT_ROOT = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
})();

/** Model cards shipped with the project (for the embedded model and the shared ImageNet models). */
export const CARDS_DIR = resolve(PROJECT_ROOT, 'cards');
/** The project's own embedded default: a Fashion-MNIST classifier and 400 test images. */
export const EMBEDDED_DIR = resolve(PROJECT_ROOT, 'assets', 'fashion-mnist');

/**
 * Folder of the real ImageNet models and images: `--assets`, else $UAP_ASSETS, else ../shared/assets
 * beside the project. They are never copied into the repository.
 */
export function assetsDir(flag?: string): string {
  return resolve(flag ?? process.env.UAP_ASSETS ?? resolve(PROJECT_ROOT, '..', 'shared', 'assets'));
}
