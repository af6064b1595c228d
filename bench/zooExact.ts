/**
 * How exactly uap runs imported PyTorch models (`npm run bench:zoo-exact`): for each zoo architecture
 * (scripts/make-onnx-fixtures.py --zoo DIR), its logits on 2 real ImageNet images against PyTorch's on
 * the same weights, and the pixel gradient of (logit 1 - logit 0) of image 0 against PyTorch's float64
 * gradient, beside PyTorch's own float32 error. No timing (bench:onnx times, and takes many minutes
 * for the transformers on 2 cores); this answers "are its gradients as exact as PyTorch's" quickly.
 * Writes bench/results/zoo-exact.json and the block `zoo-exact` of docs/models.md.
 *   node dist/bench/zooExact.js --zoo=DIR [--models=vit_b_16,swin_t,maxvit_t]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { loadClassifier } from '../src/import/load.js';
import { loadSet } from '../src/data/sets.js';
import { assetsDir, PROJECT_ROOT } from '../src/paths.js';
import { writeNpy } from '../src/io/npy.js';
import { writeAtomic } from '../src/io/atomic.js';
import { TORCH_PYTHON } from './torch.js';
import { replaceDocBlock } from './docBlock.js';
import { TORCHVISION } from './torchvision.js';
import { exactness, uapExact, type TorchExact } from './exactness.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const RESULTS = 'bench/results/zoo-exact.json';

interface Row {
  model: string;
  runsOn: string;
  logitsRelDiff: number;
  gradL2VsTorch: number;
  gradL2VsFloat64: number;
  torchL2VsFloat64: number;
  date: string;
}

const previous = (): Row[] => (existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, 'utf8')) as { rows: Row[] }).rows : []);

function table(rows: Row[]): string {
  const e = (v: number) => v.toExponential(1);
  return [
    '| model | runs on | logits vs PyTorch (max relative) | gradient vs float64 (L2 relative): uap / PyTorch float32 |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${r.runsOn} | ${e(r.logitsRelDiff)} | ${e(r.gradL2VsFloat64)} / ${e(r.torchL2VsFloat64)} |`),
  ].join('\n');
}

async function main(): Promise<void> {
  const zoo = args.get('zoo') ?? process.env.UAP_ZOO;
  const assets = assetsDir(args.get('assets'));
  if (!zoo || !existsSync(zoo) || !TORCH_PYTHON || !existsSync(assets)) {
    console.log('bench:zoo-exact: skipped (needs --zoo=DIR or UAP_ZOO, the assets folder and a Python with torch)');
    return;
  }
  const backend = await initBackend(args.get('backend'));
  const names = (args.get('models') ?? 'vit_b_16,swin_t,maxvit_t').split(',');
  const rows = previous();
  for (const name of names) {
    const model = await loadClassifier(join(zoo, `${name}.onnx`), { backend, card: { preprocess: TORCHVISION, numClasses: 1000 } });
    try {
      const X = await loadSet(model, join(assets, 'data', 'imagenet-sample-images'), { limit: 2, assets, what: 'images' });
      const x = X.images([0, 1]);
      const dir = mkdtempSync(join(tmpdir(), 'uap-zoo-exact-'));
      try {
        writeNpy(join(dir, 'x.npy'), { data: x.data, shape: [x.n, ...x.shape] });
        const torch = spawnSync(
          TORCH_PYTHON,
          [join(PROJECT_ROOT, 'bench', 'torch_zoo.py'), name, join(dir, 'x.npy'), join(dir, 'out.json'), '2', '--exact'],
          { encoding: 'utf8' },
        );
        if (torch.status !== 0) throw new Error(`${name}: the PyTorch reference failed: ${torch.stderr.trim().split('\n').pop()}`);
        const ref = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as TorchExact;
        const row: Row = {
          model: name,
          runsOn: model.runsOn ?? 'TF.js',
          ...exactness(await uapExact(model, x), ref),
          date: new Date().toISOString(),
        };
        rows.splice(0, rows.length, ...rows.filter((r) => r.model !== name), row);
        console.log(table([row]).split('\n')[2]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      model.dispose();
    }
    writeAtomic(RESULTS, JSON.stringify({ rows }, null, 2) + '\n');
    replaceDocBlock(join(PROJECT_ROOT, 'docs', 'models.md'), 'zoo-exact', table(rows));
  }
}

if (process.argv[1]?.endsWith('zooExact.js')) await main();
