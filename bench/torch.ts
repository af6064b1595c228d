import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Runs a PyTorch reference script of bench/ (Debian's python3-torch) the way that is fastest for
 * PyTorch on this machine: OpenMP threads that spin while they wait (the default, ACTIVE) are faster
 * on an idle machine; threads that sleep (PASSIVE) are up to 20x faster when anything else runs. The
 * script runs under both and every timing (a field named ...Ms or msPer...) keeps its best. The other fields
 * (logits, gradients) come from the first run.
 */

/** The interpreter that has torch, or undefined (the benches then skip the PyTorch column). */
export const TORCH_PYTHON = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);

export function runTorchBest<T extends Record<string, unknown>>(script: string, args: string[], outJson: string): T & { ompWaitPolicy: string } {
  const runs = (['ACTIVE', 'PASSIVE'] as const).map((policy) => {
    execFileSync(TORCH_PYTHON!, [script, ...args], { env: { ...process.env, OMP_WAIT_POLICY: policy }, stdio: ['ignore', 'ignore', 'inherit'] });
    return { policy, out: JSON.parse(readFileSync(outJson, 'utf8')) as T };
  });
  const best = { ...runs[0].out } as Record<string, unknown>;
  const policies = new Set<string>();
  for (const key of Object.keys(best).filter((k) => /Ms$|^msPer/.test(k) && typeof best[k] === 'number')) {
    const winner = runs.reduce((a, b) => ((b.out[key] as number) < (a.out[key] as number) ? b : a));
    best[key] = winner.out[key];
    policies.add(winner.policy);
  }
  return { ...(best as T), ompWaitPolicy: [...policies].join('/') };
}
