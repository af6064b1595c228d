import { describe, it, expect } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/**
 * The layers of src/ (docs/ARCHITECTURE.md): a module imports only from its own layer or below, so a
 * change low down never needs anything above it, and the studio can take the core without the hosts.
 */
const LAYERS: Record<string, number> = {
  math: 0,
  'errors.ts': 0,
  'tf.ts': 0,
  'paths.ts': 0,
  'log.ts': 0,
  data: 1,
  io: 1,
  model: 1,
  'backend.ts': 1,
  attacks: 2,
  analysis: 3,
  defence: 3,
  report: 3,
  scale: 4,
  jobs: 4,
  cli: 5,
  studio: 5,
  'index.ts': 5,
  'internal.ts': 5,
};
const SRC = join(import.meta.dirname, '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) =>
    statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : f.endsWith('.ts') ? [join(dir, f)] : [],
  );
}

const top = (rel: string) => rel.split('/')[0].replace(/\.js$/, '.ts');

describe('architecture', () => {
  it('every part of src/ has a layer, and no import runs upward between layers', () => {
    const upward: string[] = [];
    for (const file of files(SRC)) {
      const from = top(relative(SRC, file));
      expect(LAYERS[from], `${from}: give it a layer here and in docs/ARCHITECTURE.md`).toBeDefined();
      for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const to = top(normalize(join(dirname(relative(SRC, file)), m[1])));
        if (to !== from && LAYERS[to] > LAYERS[from]) upward.push(`${relative(SRC, file)} -> ${m[1]}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it("the studio's page and worker take the core with no Node module in the bundle (no stubs, no copies)", () => {
    // Every module the studio reaches through value imports (type-only imports leave no code).
    const root = join(import.meta.dirname, '..');
    const seen = new Set<string>();
    const nodeImports: string[] = [];
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[^;]*?\sfrom\s+)?'([^']+)'/gms)) {
        if (m[1]) continue;
        const spec = m[2];
        if (spec.startsWith('node:')) nodeImports.push(`${relative(root, file)} -> ${spec}`);
        else if (spec.startsWith('.')) {
          // A .js import names its .ts source, or a generated .js file (src/generated).
          const named = join(dirname(file), spec);
          const target = [named.replace(/\.js$/, '.ts'), named].find((f) => /\.[jt]s$/.test(f) && existsSync(f));
          if (target) walk(target);
        }
      }
    };
    walk(join(root, 'studio', 'worker.ts'));
    walk(join(root, 'studio', 'main.ts'));
    expect(seen.size).toBeGreaterThan(40);
    expect(nodeImports).toEqual([]);
    expect(readFileSync(join(root, 'studio', 'vite.config.ts'), 'utf8')).not.toMatch(/alias/);
  });

  it("the studio's worker leaves what only a browser does to its host (studio/host/), which imports neither the worker nor the page", () => {
    const studio = join(import.meta.dirname, '..', 'studio');
    // TF.js's browser backends and their wasm files, canvas decoding, fetched or dropped files, the GPU.
    const platform =
      /@tensorflow\/tfjs-backend-\w+|\?url'|\bcreateImageBitmap\b|\bOffscreenCanvas\b|\bnavigator\b|\bfetch\(|\.arrayBuffer\(\)/g;
    expect(readFileSync(join(studio, 'worker.ts'), 'utf8').match(platform) ?? []).toEqual([]);
    for (const file of readdirSync(join(studio, 'host')).filter((f) => f.endsWith('.ts')))
      expect(readFileSync(join(studio, 'host', file), 'utf8'), file).not.toMatch(/from '\.\.\/(worker|main|protocol)\.js'/);
  });
});
