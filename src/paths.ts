import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (this file is at src/paths.ts, or dist/src/paths.js once built). */
export const PROJECT_ROOT = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
})();

/** uap's own version (package.json's). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(resolve(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Model cards shipped with the project (for the embedded model and the shared ImageNet models). */
export const CARDS_DIR = resolve(PROJECT_ROOT, 'cards');
/** The project's own embedded default: a Fashion-MNIST classifier and 400 test images. */
export const EMBEDDED_DIR = resolve(PROJECT_ROOT, 'assets', 'fashion-mnist');

/** True when uap runs from an installed package (inside node_modules) rather than its own checkout. */
export const INSTALLED = PROJECT_ROOT.split(/[\\/]/).includes('node_modules');

/**
 * Folder of the real ImageNet models and images: the `assets` option, else $UAP_ASSETS,
 * else, in the project's own checkout, ../shared/assets beside it. An installed package has no default
 * (never a path inside node_modules): '' then, which no folder check passes.
 */
export function assetsDir(flag?: string): string {
  const given = flag ?? process.env.UAP_ASSETS;
  if (given) return resolve(given);
  return INSTALLED ? '' : resolve(PROJECT_ROOT, '..', 'shared', 'assets');
}

/** How to name the assets folder in a message: its path, or that none was given. */
export function assetsHint(assets: string): string {
  return assets ? `the assets folder is ${assets}` : 'no assets folder was given';
}
