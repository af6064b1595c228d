/**
 * How long the commands a new user runs first take (`npm run bench:times`): each in a fresh process and
 * a fresh output folder, wall time and peak RSS (GNU time), on this machine. Writes
 * bench/results/times.{json,md} and the README's block between `<!-- times:begin -->` and
 * `<!-- times:end -->`, so the times the README quotes are the last run's, with the machine they came from.
 *   node dist/bench/times.js [--only=demo,demo-imagenet,reproduce-quick] [--render]
 * --render writes times.md and the README block again from times.json without running anything.
 * The ImageNet rows need the assets folder (UAP_ASSETS or ../shared/assets); without it they are left out.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';
import { replaceDocBlock } from './docBlock.js';

interface Row {
  name: string;
  command: string;
  seconds: number;
  peakMB: number;
}

const CLI = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');
const assets = process.env.UAP_ASSETS ?? resolve(PROJECT_ROOT, '..', 'shared', 'assets');
const hasAssets = existsSync(join(assets, 'models'));

/** The commands, as the README gives them (the npm scripts run this CLI). */
const COMMANDS: { name: string; args: string[]; shown: string; assets?: boolean }[] = [
  { name: 'demo', args: ['demo'], shown: 'uap demo' },
  { name: 'demo-imagenet', args: ['demo', '--imagenet'], shown: 'uap demo --imagenet', assets: true },
  { name: 'reproduce-quick', args: ['reproduce', '--quick'], shown: 'uap reproduce --quick', assets: true },
];

function timed(args: string[], out: string): { seconds: number; peakMB: number } {
  const stats = join(out, 'time.txt');
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', stats, process.execPath, CLI, ...args, '-o', join(out, 'run')], {
    cwd: out,
    env: { ...process.env, UAP_ASSETS: assets },
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return { seconds, peakMB: Number(readFileSync(stats, 'utf8').trim().split('\n').pop()) / 1024 };
}

function markdown(rows: Row[], machine: string): string {
  return [
    `Measured by \`npm run bench:times\` on ${machine}, one command at a time, each in a fresh process (\`npm run demo\` and \`demo:imagenet\` run these after compiling the project):`,
    '',
    '| command | wall time | peak memory |',
    '|---|---|---|',
    ...rows.map(
      (r) =>
        `| \`${r.command}\` | ${r.seconds < 120 ? `${r.seconds.toFixed(0)} s` : `${(r.seconds / 60).toFixed(1)} min`} | ${r.peakMB.toFixed(0)} MB |`,
    ),
  ].join('\n');
}

function main(): void {
  const only = process.argv
    .find((a) => a.startsWith('--only='))
    ?.slice(7)
    .split(',');
  const render = process.argv.includes('--render');
  const rows: Row[] = [];
  for (const c of render ? [] : COMMANDS) {
    if (only && !only.includes(c.name)) continue;
    if (c.assets && !hasAssets) {
      process.stdout.write(`skip ${c.name}: no assets folder at ${assets}\n`);
      continue;
    }
    const out = mkdtempSync(join(tmpdir(), `uap-times-${c.name}-`));
    try {
      process.stdout.write(`${c.shown} ...\n`);
      rows.push({ name: c.name, command: c.shown, ...timed(c.args, out) });
      process.stdout.write(`  ${rows[rows.length - 1].seconds.toFixed(1)} s\n`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }
  let machine = `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
  const results = join(PROJECT_ROOT, 'bench', 'results');
  // Rows not rerun (--only) keep their last figures.
  const file = join(results, 'times.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { machine: string; rows: Row[] }) : undefined;
  const before = saved?.rows ?? [];
  if (render && saved) machine = saved.machine;
  const merged = COMMANDS.map((c) => {
    const r = rows.find((x) => x.name === c.name) ?? before.find((x) => x.name === c.name);
    return r && { ...r, command: c.shown };
  }).filter((r): r is Row => r !== undefined);
  writeAtomic(file, JSON.stringify({ machine, rows: merged }, null, 2) + '\n');
  const md = markdown(merged, machine);
  writeAtomic(join(results, 'times.md'), md + '\n');
  replaceDocBlock(join(PROJECT_ROOT, 'README.md'), 'times', md);
  process.stdout.write(md + '\n');
}

main();
