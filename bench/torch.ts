import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Runs a PyTorch reference script of bench/ (Debian's python3-torch) the way that is fastest for
 * PyTorch on this machine, so that a ratio against it is never against a handicapped PyTorch:
 * - OpenMP threads that spin while they wait (the default, ACTIVE) are faster on an idle machine;
 *   threads that sleep (PASSIVE) are up to 20x faster when anything else runs;
 * - glibc's allocator returns large freed blocks to the system by default, so every call's activations
 *   fault in fresh pages; told to keep them (TUNED_MALLOC, which a PyTorch user may set) PyTorch was up
 *   to 4x faster here (bench:stream).
 * The script runs under each combination and every timing (a field named ...Ms or msPer...) keeps its
 * best. The other fields (logits, gradients) come from the first run.
 */

/** The interpreter that has torch, or undefined (the benches then skip the PyTorch column). */
export const TORCH_PYTHON = ['/usr/bin/python3', 'python3'].find(
  (p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0,
);

/** glibc malloc settings that keep freed memory for reuse instead of returning it to the system. */
export const TUNED_MALLOC = { MALLOC_MMAP_THRESHOLD_: '1000000000', MALLOC_TRIM_THRESHOLD_: '4000000000' };

/** Whether a library path (bench/torch_net.py's `blas`) is Debian's reference BLAS, which no fair reference runs on. */
export const isReferenceBlas = (path: string): boolean => /\/blas\/libblas/.test(path);

/** The setting a quick bench runs alone: the fastest on an idle machine. */
export const IDLE_BEST = 'ACTIVE, malloc tuned';

const SETTINGS = (['ACTIVE', 'PASSIVE'] as const).flatMap((policy) => [
  { name: policy, env: { OMP_WAIT_POLICY: policy } },
  { name: `${policy}, malloc tuned`, env: { OMP_WAIT_POLICY: policy, ...TUNED_MALLOC } },
]);

/**
 * `only`: the names of the settings to run (all by default); a quick bench names the one that wins on
 * an idle machine, spinning threads with the allocator tuned.
 */
export function runTorchBest<T extends Record<string, unknown>>(
  script: string,
  args: string[],
  outJson: string,
  only?: readonly string[],
): T & { torchSettings: string } {
  const settings = only ? SETTINGS.filter((s) => only.includes(s.name)) : SETTINGS;
  if (settings.length === 0) throw new Error(`runTorchBest: no setting named ${only?.join(', ')}`);
  const runs = settings.map((setting) => {
    execFileSync(TORCH_PYTHON!, [script, ...args], { env: { ...process.env, ...setting.env }, stdio: ['ignore', 'ignore', 'inherit'] });
    return { setting: setting.name, out: JSON.parse(readFileSync(outJson, 'utf8')) as T };
  });
  const best = { ...runs[0].out } as Record<string, unknown>;
  if (typeof best.blas === 'string' && isReferenceBlas(best.blas))
    console.warn(`PyTorch runs its matrix products on the reference BLAS (${best.blas}): install libopenblas0-openmp for a fair reference`);
  const winners = new Set<string>();
  for (const key of Object.keys(best).filter((k) => /Ms$|^msPer/.test(k) && typeof best[k] === 'number')) {
    const winner = runs.reduce((a, b) => ((b.out[key] as number) < (a.out[key] as number) ? b : a));
    best[key] = winner.out[key];
    winners.add(winner.setting);
  }
  return { ...(best as T), torchSettings: [...winners].join(' / ') };
}
