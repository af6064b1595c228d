import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ortModulePath } from './ortModule.js';
import onnxProto from 'onnx-proto';
import type { Device } from './emit.js';

/**
 * Which execution provider ONNX Runtime gives each node of a model, and which nodes may stay on the
 * CPU. ONNX Runtime states its placements only in its verbose log, which the native library writes to
 * the process's stderr, so a child process builds the sessions and this reads its log. Used by the
 * WebGPU op tests and bench:gpu to prove that no node of ours silently falls back to the CPU.
 */

/** A node ONNX Runtime placed: its type and name as the model names it. */
export interface PlacedNode {
  opType: string;
  name: string;
}

/** Per model: the nodes placed on each provider ('CPUExecutionProvider', 'WebGpuExecutionProvider', ...), or the error that stopped the session. */
export type Placements = { providers: Record<string, PlacedNode[]> } | { error: string };

const CHILD = `
const ort = require(process.argv[1]);
const files = JSON.parse(process.argv[2]);
(async () => {
  for (const [i, f] of files.entries()) {
    try {
      const s = await ort.InferenceSession.create(f, { executionProviders: [process.argv[3]], graphOptimizationLevel: 'all', logSeverityLevel: 0, logVerbosityLevel: 0, logId: 'm' + i });
      await s.release();
    } catch (e) {
      process.stderr.write('@@error ' + i + ' ' + String(e && e.message || e).split('\\n')[0] + '\\n');
    }
  }
})();
`;

const PLACED = /Node\(s\) placed on \[(\w+)\]/;
/** When one provider takes every node, ONNX Runtime says so without listing them. */
const ALL_PLACED = /All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)/;
const NODE = /VerifyEachNodeIsAssignedToAnEp\]\s{3}(\S+) \((.*)\)\s*$/;

/** The placements of each model on `provider`, read from ONNX Runtime's verbose log of a child process. */
export async function nodePlacements(models: Uint8Array[], provider: Device): Promise<Placements[]> {
  const dir = mkdtempSync(join(tmpdir(), 'uap-placement-'));
  try {
    const files = models.map((m, i) => {
      const f = join(dir, `${i}.onnx`);
      writeFileSync(f, m);
      return f;
    });
    const ortPath = ortModulePath();
    const log = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', CHILD, ortPath, JSON.stringify(files), provider], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let text = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (text += d));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve(text) : reject(new Error(`placement child exited with ${code}: ${text.slice(-500)}`)),
      );
    });
    // Each session logs under its own id ([V:onnxruntime:m3, ...]): the native log and the child's own
    // lines reach the pipe in no guaranteed order.
    const providers: Record<string, PlacedNode[]>[] = models.map(() => ({}));
    const errors = new Map<number, string>();
    const on = new Map<number, string>();
    for (const line of log.split('\n')) {
      const error = /^@@error (\d+) (.*)$/.exec(line);
      if (error) errors.set(Number(error[1]), error[2]);
      const id = /\[\w:onnxruntime:m(\d+),/.exec(line);
      if (!id) continue;
      const i = Number(id[1]);
      const placed = PLACED.exec(line);
      const all = ALL_PLACED.exec(line);
      const node = NODE.exec(line);
      if (all) providers[i][all[1]] = Array.from({ length: Number(all[2]) }, () => ({ opType: '?', name: '?' }));
      else if (placed) {
        on.set(i, placed[1]);
        providers[i][placed[1]] = [];
      } else if (node && on.has(i)) providers[i][on.get(i)!].push({ opType: node[1], name: node[2] });
    }
    const out: Placements[] = providers.map((p, i) => (errors.has(i) ? { error: errors.get(i)! } : { providers: p }));
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Names of the nodes that compute shapes only: Shape itself and every node whose inputs are all
 * constants or shape-only values. ONNX Runtime keeps these on the CPU on purpose (small int64 tensors
 * that set sizes); any other node there is a fallback.
 */
export function shapeOnlyNodes(model: Uint8Array): Set<string> {
  const graph = onnxProto.onnx.ModelProto.decode(model).graph!;
  const known = new Set<string>((graph.initializer ?? []).map((t) => t.name!));
  const names = new Set<string>();
  for (const n of graph.node ?? []) {
    const inputs = (n.input ?? []).filter((i) => i !== '');
    if (n.opType === 'Shape' || (inputs.length > 0 && inputs.every((i) => known.has(i)))) {
      names.add(n.name!);
      for (const o of n.output ?? []) known.add(o);
    }
  }
  return names;
}

/** The nodes of a model placed on the CPU provider that are not shape arithmetic: fallbacks of a GPU session. */
export function cpuFallbacks(model: Uint8Array, placements: Placements): PlacedNode[] {
  if ('error' in placements) return [];
  const allowed = shapeOnlyNodes(model);
  return (placements.providers.CPUExecutionProvider ?? []).filter((n) => !allowed.has(n.name));
}
