import { describe, it, expect } from 'vitest';
import ts from 'typescript';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/paths.js';
import * as api from '../src/index.js';
import * as internal from '../src/internal.js';

/** Exports of a module with their doc comments, as TypeScript resolves them (re-exports followed to their declarations). */
function documentedExports(file: string): Map<string, string> {
  const path = join(PROJECT_ROOT, file);
  const program = ts.createProgram([path], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(path)!)!;
  return new Map(
    checker.getExportsOfModule(module).map((e) => {
      const s = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
      return [e.name, ts.displayPartsToString(s.getDocumentationComment(checker)).trim()];
    }),
  );
}

describe('the public API (uap) and the internals (uap/internal)', () => {
  it('every export of the public API has a doc comment where it is declared', () => {
    const docs = documentedExports('src/index.ts');
    expect(docs.size).toBeGreaterThan(60);
    expect([...docs].filter(([, doc]) => !doc).map(([name]) => name)).toEqual([]);
  }, 60_000);

  it('uap/internal holds the whole public API and more; the public API holds none of the internals', () => {
    for (const name of Object.keys(api)) expect(internal, name).toHaveProperty(name);
    for (const name of ['exportOnnx', 'runPasses', 'Rng', 'encodeNpy', 'loadModel', 'studioHandler', 'candidateGradientsLoop']) {
      expect(internal, name).toHaveProperty(name);
      expect(api, name).not.toHaveProperty(name);
    }
  });
});
