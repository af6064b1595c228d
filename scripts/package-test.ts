/**
 * The package as a user gets it (`npm run test:package`, run by .ci/run after `npm test`): packs the
 * built project, checks the tarball's contents and size, installs it into an empty project with plain
 * `npm i` (the npm registry as the only network; no flags, no environment), and there runs
 * `npx uap demo`, `npx uap studio` (page and catalog) and every ```js block of the README verbatim
 * (blocks that read UAP_ASSETS only when an assets folder is at hand). Needs `npm run build` first.
 *   node dist/scripts/package-test.js [--keep]
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../src/paths.js';
import { writeAtomic } from '../src/io/atomic.js';

/** Limits the package must stay within (raise them only with a reason in the CHANGELOG). */
/** installedMB: without ONNX Runtime (npm dropped the optional package) / with it (binaries for every platform). */
const LIMITS = { tarballMB: 12, unpackedMB: 40, installedMB: 350, installedWithOrtMB: 680 };
/** Paths the tarball must not carry: development-only builds and source maps of unshipped sources. */
const FORBIDDEN = [/^dist\/bench\//, /^dist\/scripts\//, /\.map$/, /^test\//, /^src\//];
/** Files a user of the package needs. */
const REQUIRED = [
  'dist/src/cli/main.js',
  'dist/src/index.js',
  'dist/src/index.d.ts',
  'dist/src/internal.js',
  'dist/src/generated/tfjs-registrations.js',
  'dist-studio/index.html',
  'README.md',
  'LICENSE',
  'CHANGELOG.md',
];

const failures: string[] = [];
const check = (ok: boolean, what: string) => {
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
  if (!ok) failures.push(what);
};

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  process.stdout.write(`$ ${cmd} ${args.join(' ')}   (in ${cwd})\n`);
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
}

const mb = (bytes: number) => bytes / 2 ** 20;

/** npm pack --dry-run's view of the tarball: what it holds and how big it is. */
/** What the package weighs, as measured here (written to bench/results/package.json for the README). */
const measured: Record<string, string | number> = {};

function packTarball(dest: string): string {
  const r = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], PROJECT_ROOT);
  if (r.status !== 0) throw new Error(`npm pack failed:\n${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
  const paths = info.files.map((f) => f.path);
  Object.assign(measured, { tarballMB: +mb(info.size).toFixed(1), unpackedMB: +mb(info.unpackedSize).toFixed(1), files: paths.length });
  process.stdout.write(
    `tarball ${info.filename}: ${mb(info.size).toFixed(1)} MB, ${mb(info.unpackedSize).toFixed(1)} MB unpacked, ${paths.length} files\n`,
  );
  check(mb(info.size) <= LIMITS.tarballMB, `tarball ${mb(info.size).toFixed(1)} MB <= ${LIMITS.tarballMB} MB`);
  check(mb(info.unpackedSize) <= LIMITS.unpackedMB, `unpacked ${mb(info.unpackedSize).toFixed(1)} MB <= ${LIMITS.unpackedMB} MB`);
  const forbidden = paths.filter((p) => FORBIDDEN.some((re) => re.test(p)));
  check(
    forbidden.length === 0,
    `no development files in the tarball${forbidden.length ? ` (found ${forbidden.slice(0, 5).join(', ')})` : ''}`,
  );
  for (const f of REQUIRED) check(paths.includes(f), `tarball has ${f}`);
  return join(dest, info.filename);
}

/** Megabytes under `dir` (du: what the user's disk holds). */
function duMB(dir: string): number {
  const r = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  return Number(r.stdout.split(/\s/)[0]) / 1024;
}

/** The ```js blocks of the README, in order. */
export function readmeBlocks(markdown: string, lang = 'js'): string[] {
  const blocks: string[] = [];
  const re = new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```', 'gm');
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) blocks.push(m[1]);
  return blocks;
}

/** Starts `npx uap studio --port 0`, fetches its page and catalog, stops it. */
async function checkStudio(app: string): Promise<void> {
  const child = spawn('npx', ['uap', 'studio', '--port', '0'], { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    const url = await new Promise<string>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`studio did not start in 120 s:\n${out}`)), 120_000);
      const poll = setInterval(() => {
        const m = /open (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(t);
          clearInterval(poll);
          res(m[1].replace(/\/$/, ''));
        }
      }, 200);
    });
    const page = await fetch(`${url}/`);
    check(page.ok && (await page.text()).includes('<script'), `studio page ${url}/ served`);
    const catalog = (await (await fetch(`${url}/api/catalog`)).json()) as {
      models?: { name: string }[];
      datasets?: { items: unknown[] }[];
    };
    check(!!catalog.models?.some((m) => m.name === 'fashion-mnist-cnn'), 'studio catalog lists the embedded model');
    check(!!catalog.datasets?.some((d) => d.items.length > 0), 'studio catalog lists the embedded images');
  } catch (e) {
    check(false, `studio: ${(e as Error).message}`);
  } finally {
    if (child.pid) process.kill(-child.pid, 'SIGTERM');
  }
}

/** `npm i` of the tarball in a fresh project at `app` (created), with `env` as the user's environment; whether ONNX Runtime landed, and the size. */
function installIn(app: string, tarball: string, env: NodeJS.ProcessEnv, what: string): { ok: boolean; ort: boolean; mb: number } {
  mkdirSync(app);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'uap-package-test', version: '1.0.0', private: true, type: 'module' }, null, 2),
  );
  const install = run('npm', ['i', '--no-audit', '--no-fund', tarball], app, env);
  process.stdout.write(install.stdout + install.stderr);
  check(install.status === 0, `npm i uap succeeds (${what})`);
  check(!/EBADENGINE|Unsupported engine/.test(install.stderr), `no engine warning on Node ${process.version} (${what})`);
  // npm 11.19 lists dependencies' install scripts (msgpackr-extract, protobufjs) under "install-scripts":
  // theirs, not ours. What uap's package or settings could cause (an unknown config, a peer conflict) must not appear.
  const ours = install.stderr.split('\n').filter((l) => /^npm warn/i.test(l) && !/^npm warn (install-scripts|deprecated)/i.test(l));
  check(ours.length === 0, `no npm warning from uap's package (${what})${ours.length ? `: ${ours.slice(0, 3).join(' | ')}` : ''}`);
  const ort = existsSync(join(app, 'node_modules', 'onnxruntime-node', 'package.json'));
  const size = duMB(join(app, 'node_modules'));
  process.stdout.write(`installed (${what}): ${size.toFixed(0)} MB in node_modules, onnxruntime-node ${ort ? 'present' : 'absent'}\n`);
  return { ok: install.status === 0, ort, mb: size };
}

async function main(): Promise<void> {
  const keep = process.argv.includes('--keep');
  const work = mkdtempSync(join(tmpdir(), 'uap-package-'));
  try {
    const tarball = packTarball(work);
    // A user's environment: none of this project's npm settings or variables.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|UAP_|ONNXRUNTIME_)/i.test(k)));
    const npmVersion = run('npm', ['--version'], work, env).stdout.trim();
    Object.assign(measured, { node: process.version, npm: npmVersion });

    // 1. Plain `npm i uap`: onnxruntime-node is optional; where its CUDA fetch from NuGet fails (this
    // machine reaches only the npm registry) npm drops it and uap runs on TF.js, saying how to add it.
    const plain = installIn(join(work, 'plain'), tarball, env, 'plain');
    Object.assign(measured, { installedMB: Math.round(plain.mb), plainInstallHasOrt: plain.ort ? 1 : 0 });
    check(
      plain.mb <= (plain.ort ? LIMITS.installedWithOrtMB : LIMITS.installedMB),
      `installed ${plain.mb.toFixed(0)} MB within the limit (plain)`,
    );
    if (plain.ok && !plain.ort) {
      const acc = run('npx', ['uap', 'accuracy', '--limit', '50'], join(work, 'plain'), env);
      check(acc.status === 0, `npx uap accuracy runs without ONNX Runtime${acc.status === 0 ? '' : `:\n${acc.stderr.slice(-1500)}`}`);
      check(acc.stderr.includes('ONNXRUNTIME_NODE_INSTALL=skip npm i onnxruntime-node'), 'without ONNX Runtime, uap says how to add it');
    }

    // 2. With the variable that skips the CUDA fetch: ONNX Runtime is installed from the registry alone.
    const app = join(work, 'with-ort');
    const withOrt = installIn(app, tarball, { ...env, ONNXRUNTIME_NODE_INSTALL: 'skip' }, 'ONNXRUNTIME_NODE_INSTALL=skip');
    Object.assign(measured, { installedWithOrtMB: Math.round(withOrt.mb) });
    check(withOrt.ort, 'ONNXRUNTIME_NODE_INSTALL=skip npm i uap installs onnxruntime-node');
    check(
      withOrt.mb <= LIMITS.installedWithOrtMB,
      `installed ${withOrt.mb.toFixed(0)} MB <= ${LIMITS.installedWithOrtMB} MB (with ONNX Runtime)`,
    );
    writeAtomic(join(PROJECT_ROOT, 'bench', 'results', 'package.json'), JSON.stringify(measured, null, 2) + '\n');
    if (!withOrt.ok) return;

    const demo = run('npx', ['uap', 'demo'], app, env);
    process.stdout.write(demo.stderr.split('\n').slice(-6).join('\n') + '\n');
    check(demo.status === 0 && existsSync(join(app, 'runs', 'demo', 'report.html')), 'npx uap demo writes its report');
    check(/backend: onnx/.test(demo.stderr + demo.stdout), 'the demo runs on ONNX Runtime');
    await checkStudio(app);

    const assets = process.env.UAP_ASSETS ?? resolve(PROJECT_ROOT, '..', 'shared', 'assets');
    readmeBlocks(readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8')).forEach((code, i) => {
      const needsAssets = code.includes('UAP_ASSETS');
      if (needsAssets && !existsSync(assets)) {
        process.stdout.write(`skip README js block ${i + 1}: it reads UAP_ASSETS and no assets folder is at hand\n`);
        return;
      }
      const file = join(app, `readme-${i + 1}.mjs`);
      writeFileSync(file, code);
      const r = run('node', [file], app, needsAssets ? { ...env, UAP_ASSETS: assets } : env);
      process.stdout.write(r.stdout.split('\n').slice(-4).join('\n') + '\n');
      check(r.status === 0, `README js block ${i + 1} runs verbatim${r.status === 0 ? '' : `:\n${r.stderr.slice(-2000)}`}`);
    });
  } finally {
    if (keep) process.stdout.write(`kept ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
  if (failures.length) {
    process.stdout.write(`\n${failures.length} package check(s) failed\n`);
    process.exit(1);
  }
  process.stdout.write('\npackage checks passed\n');
}

await main();
