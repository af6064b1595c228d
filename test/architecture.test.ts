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
  generated: 0,
  io: 1,
  data: 1,
  engine: 1,
  classifier: 2,
  import: 3,
  evaluation: 3,
  perturbation: 3,
  attacks: 4,
  run: 4,
  analysis: 5,
  defence: 5,
  report: 5,
  scale: 6,
  jobs: 6,
  cli: 7,
  studio: 7,
  'index.ts': 7,
  'internal.ts': 7,
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

  it('no import cycle between the files of src/, nor between its parts of one layer', () => {
    const imports = new Map<string, string[]>();
    for (const file of files(SRC)) {
      const from = relative(SRC, file);
      const to = [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)]
        .map((m) => normalize(join(dirname(from), m[1])).replace(/\.js$/, '.ts'))
        .filter((t) => existsSync(join(SRC, t)));
      imports.set(from, to);
    }
    const cycles = (graph: Map<string, string[]>) => {
      // Depth-first search; a back edge closes a cycle, reported as the path around it.
      const found: string[] = [];
      const state = new Map<string, 'open' | 'done'>();
      const path: string[] = [];
      const visit = (v: string) => {
        state.set(v, 'open');
        path.push(v);
        for (const w of graph.get(v) ?? []) {
          if (state.get(w) === 'open') found.push([...path.slice(path.indexOf(w)), w].join(' -> '));
          else if (!state.has(w)) visit(w);
        }
        path.pop();
        state.set(v, 'done');
      };
      for (const v of graph.keys()) if (!state.has(v)) visit(v);
      return found;
    };
    expect(cycles(imports)).toEqual([]);
    const parts = new Map<string, string[]>();
    for (const [from, tos] of imports)
      for (const to of tos) if (top(from) !== top(to)) parts.set(top(from), [...(parts.get(top(from)) ?? []), top(to)]);
    expect(cycles(parts)).toEqual([]);
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
