import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { extname, join, relative, resolve, sep } from 'node:path';
import { UsageError } from '../errors.js';
import { EMBEDDED_DIR, PROJECT_ROOT, assetsDir } from '../paths.js';
import { bundledModels, cardWnids } from '../model/load.js';
import { readCard, resolveCardPath, cardLabels, type ModelCard } from '../model/card.js';
import type { BrowserCard, BrowserDataset, StudioCatalog } from './catalog.js';

export type { BrowserCard, BrowserDataset, StudioCatalog };
import { listDataset } from '../data/dataset.js';
import { defaultFolders, wnidsOf } from '../pipeline.js';

/**
 * The studio's server side: the built page, and the models and images it may use. The page fetches
 * /api/catalog (cards with URLs, labels inline; image lists with labels), then the files under /files.
 * Folders are listed and labelled by the same library code as the CLI's.
 */

export const STUDIO_DIR = join(PROJECT_ROOT, 'dist-studio');

/** URL roots for the folders the page may read. */
function roots(assets: string): Record<string, string> {
  return { embedded: EMBEDDED_DIR, assets };
}

function toUrl(file: string, assets: string): string | undefined {
  for (const [name, dir] of Object.entries(roots(assets))) {
    const rel = relative(dir, file);
    if (!rel.startsWith('..') && !rel.startsWith(sep)) return `/files/${name}/${rel.split(sep).map(encodeURIComponent).join('/')}`;
  }
  return undefined;
}

function browserCard(card: ModelCard, assets: string): BrowserCard | undefined {
  const file = resolveCardPath(card, card.model, assets);
  const modelUrl = existsSync(file) ? toUrl(file, assets) : undefined;
  if (!modelUrl || card.format === 'graph') return undefined;
  const { baseDir: _b, labels: _l, ...rest } = card;
  return { ...rest, modelUrl, labels: cardLabels(card, assets), wnids: cardWnids(card, assets) };
}

/** The bundled models whose files are present, and the image folders that go with them. */
export function studioCatalog(assetsFlag?: string): StudioCatalog {
  const assets = assetsDir(assetsFlag);
  const haveAssets = existsSync(assets);
  const models: BrowserCard[] = [];
  for (const cardFile of Object.values(bundledModels())) {
    const c = browserCard(readCard(cardFile), assets);
    if (c) models.push(c);
  }
  const own = defaultFolders('own', assets);
  const imagenet = defaultFolders('imagenet', assets);
  const sets: [string, string, string, 'imagenet' | 'own'][] = [
    ['fashion-val', 'Fashion-MNIST validation (200)', own.val, 'own'],
    ['fashion-craft', 'Fashion-MNIST crafting set (200)', own.data, 'own'],
    ['imagenet-val', 'ImageNet validation (ILSVRC2012, 1300)', imagenet.val, 'imagenet'],
    ['imagenet-sample', 'ImageNet sample images (1000, one per class)', imagenet.data, 'imagenet'],
  ];
  const wnids = wnidsOf(assets);
  const datasets: BrowserDataset[] = [];
  for (const [id, title, dir, labelSpace] of sets) {
    if (!existsSync(dir)) continue;
    const items = listDataset(dir, { wnids: labelSpace === 'imagenet' ? wnids : undefined });
    datasets.push({ id, title, labelSpace, items: items.flatMap((i) => (toUrl(i.path, assets) ? [{ url: toUrl(i.path, assets)!, label: i.label }] : [])) });
  }
  return { models, datasets, assets: haveAssets ? assets : null };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.json': 'application/json',
  '.wasm': 'application/wasm', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.svg': 'image/svg+xml', '.bin': 'application/octet-stream',
  '.tflite': 'application/octet-stream', '.txt': 'text/plain; charset=utf-8', '.npy': 'application/octet-stream',
};

function sendFile(res: ServerResponse, file: string): void {
  res.writeHead(200, { 'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': statSync(file).size });
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

/** `dir/rel`, or undefined when rel climbs out of dir. */
function inside(dir: string, rel: string): string | undefined {
  const f = resolve(dir, '.' + sep + rel);
  return f === dir || f.startsWith(dir + sep) ? f : undefined;
}

/**
 * Handles /api/catalog and /files/...; with `staticDir`, serves the built page for everything else.
 * Without it (the Vite dev server), unknown paths go to `next`.
 */
export function studioHandler(opts: { assets?: string; staticDir?: string }) {
  const assets = assetsDir(opts.assets);
  let catalog: StudioCatalog | undefined;
  return (req: IncomingMessage, res: ServerResponse, next?: () => void): void => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('malformed URL');
      return;
    }
    try {
      if (path === '/api/catalog') {
        catalog ??= studioCatalog(opts.assets);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(catalog));
        return;
      }
      const m = /^\/files\/(embedded|assets)\/(.+)$/.exec(path);
      if (m) {
        const f = inside(roots(assets)[m[1]], m[2]);
        if (f && existsSync(f) && statSync(f).isFile()) return sendFile(res, f);
        res.writeHead(404).end('not found');
        return;
      }
      if (opts.staticDir) {
        const f = inside(opts.staticDir, path === '/' ? 'index.html' : path.slice(1));
        if (f && existsSync(f) && statSync(f).isFile()) return sendFile(res, f);
        res.writeHead(404).end('not found');
        return;
      }
      next?.();
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end((e as Error).message);
    }
  };
}

/** `uap studio`: serves the built page on localhost. */
export async function serveStudio(opts: { port: number; host?: string; assets?: string }): Promise<{ url: string; close: () => Promise<void> }> {
  if (!existsSync(join(STUDIO_DIR, 'index.html')))
    throw new UsageError(`studio: ${STUDIO_DIR} has no built page; run npm run build:studio (or npm run build) first`);
  const server = createServer(studioHandler({ assets: opts.assets, staticDir: STUDIO_DIR }));
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(e.code === 'EADDRINUSE' ? new UsageError(`--port ${opts.port}: already in use; pick another`) : e),
    );
    server.listen(opts.port, host, () => ok());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return { url: `http://${host}:${port}/`, close: () => new Promise((r) => server.close(() => r())) };
}
