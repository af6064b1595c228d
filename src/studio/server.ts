import { createReadStream, existsSync, realpathSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { extname, join, relative, resolve, sep } from 'node:path';
import { UsageError } from '../errors.js';
import { EMBEDDED_DIR, PROJECT_ROOT, assetsDir } from '../paths.js';
import { bundledModels, cardWnids } from '../import/load.js';
import { readCard, resolveCardPath, cardLabels, type ModelCard } from '../classifier/card.js';
import type { BrowserCard, BrowserDataset, StudioCatalog } from './catalog.js';

export type { BrowserCard, BrowserDataset, StudioCatalog };
import { listDataset } from '../data/dataset.js';
import { defaultFolders, wnidsOf } from '../data/sets.js';

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
  // The page gets URLs, never the server's paths: the model's file name stands for its path.
  return { ...rest, model: file.split(sep).pop()!, modelUrl, labels: cardLabels(card, assets), wnids: cardWnids(card, assets) };
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
  // First of its label space is the page's default: for the embedded model, both of its sets, so that
  // the studio's half-and-half split crafts v on 200 images (on 100, v generalises visibly worse).
  const sets: [string, string, string[], 'imagenet' | 'own'][] = [
    ['fashion-all', 'Fashion-MNIST, both embedded sets (400)', [own.data, own.val], 'own'],
    ['fashion-val', 'Fashion-MNIST validation (200)', [own.val], 'own'],
    ['fashion-craft', 'Fashion-MNIST crafting set (200)', [own.data], 'own'],
    ['imagenet-val', 'ImageNet validation (ILSVRC2012, 1300)', [imagenet.val], 'imagenet'],
    ['imagenet-sample', 'ImageNet sample images (1000, one per class)', [imagenet.data], 'imagenet'],
  ];
  const wnids = wnidsOf(assets);
  const datasets: BrowserDataset[] = [];
  for (const [id, title, dirs, labelSpace] of sets) {
    if (!dirs.every((dir) => existsSync(dir))) continue;
    const items = dirs.flatMap((dir) => listDataset(dir, { wnids: labelSpace === 'imagenet' ? wnids : undefined }));
    datasets.push({
      id,
      title,
      labelSpace,
      items: items.flatMap((i) => (toUrl(i.path, assets) ? [{ url: toUrl(i.path, assets)!, label: i.label }] : [])),
    });
  }
  return { models, datasets, assets: haveAssets };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.bin': 'application/octet-stream',
  '.tflite': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
  '.npy': 'application/octet-stream',
};

function sendFile(req: IncomingMessage, res: ServerResponse, file: string): void {
  res.writeHead(200, {
    'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': statSync(file).size,
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

/**
 * The file `dir/rel` when it exists and, all symbolic links followed, lies inside `dir` (itself
 * resolved); else undefined: a link in a served folder must not serve /etc/passwd.
 */
function inside(dir: string, rel: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const root = realpathSync(dir);
  const f = resolve(root, '.' + sep + rel);
  if (!existsSync(f)) return undefined;
  const real = realpathSync(f);
  return (real === root || real.startsWith(root + sep)) && statSync(real).isFile() ? real : undefined;
}

/**
 * Host names a page served by this server may be reached by: loopback names and the bound address;
 * bound to every interface (0.0.0.0, ::), every address of this machine and its host name. Any other
 * Host header is refused (a page of another site cannot reach the studio by DNS rebinding).
 */
function allowedHosts(bound: string): Set<string> {
  const bracket = (a: string) => (a.includes(':') && !a.startsWith('[') ? `[${a}]` : a);
  const names = ['localhost', '127.0.0.1', '[::1]', '::1', bracket(bound)];
  if (bound === '0.0.0.0' || bound === '::') {
    for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) names.push(bracket(i.address.toLowerCase()));
    names.push(hostname().toLowerCase());
  }
  return new Set(names);
}

/** The Host header without its port ("[::1]:5175" -> "[::1]"). */
function hostName(header: string | undefined): string {
  const h = (header ?? '').trim().toLowerCase();
  return h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.split(':')[0];
}

/**
 * Handles /api/catalog and /files/...; with `staticDir`, serves the built page for everything else.
 * Without it (the Vite dev server), unknown paths go to `next`.
 */
export function studioHandler(opts: { assets?: string; staticDir?: string; host?: string }) {
  const assets = assetsDir(opts.assets);
  const hosts = allowedHosts(opts.host ?? '127.0.0.1');
  let catalog: StudioCatalog | undefined;
  return (req: IncomingMessage, res: ServerResponse, next?: () => void): void => {
    // Read-only, same-origin: no other methods, no CORS headers, and only requests addressed to this
    // server by a name it answers to (a rebound DNS name pointing here is refused).
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed');
      return;
    }
    if (!hosts.has(hostName(req.headers.host))) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden host');
      return;
    }
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
        if (f) return sendFile(req, res, f);
        res.writeHead(404).end('not found');
        return;
      }
      if (opts.staticDir) {
        const f = inside(opts.staticDir, path === '/' ? 'index.html' : path.slice(1));
        if (f) return sendFile(req, res, f);
        res.writeHead(404).end('not found');
        return;
      }
      next?.();
    } catch {
      // No server paths or stack traces in answers.
      res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
    }
  };
}

/** Loopback addresses and names: only these are served without a warning. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `uap studio`: serves the built page on localhost (another --host only when asked). */
export async function serveStudio(opts: {
  port: number;
  host?: string;
  assets?: string;
}): Promise<{ url: string; close: () => Promise<void> }> {
  if (!existsSync(join(STUDIO_DIR, 'index.html')))
    throw new UsageError(`studio: ${STUDIO_DIR} has no built page; run npm run build:studio (or npm run build) first`);
  if (!(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535))
    throw new UsageError(`{port} ${opts.port}: expected an integer in 0..65535`);
  const host = opts.host ?? '127.0.0.1';
  if (host !== 'localhost' && !isIP(host)) throw new UsageError(`{host} ${host}: expected an IP address of this machine (or localhost)`);
  const server = createServer(studioHandler({ assets: opts.assets, staticDir: STUDIO_DIR, host }));
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      fail(
        e.code === 'EADDRINUSE'
          ? new UsageError(`{port} ${opts.port}: already in use; pick another`)
          : e.code === 'EADDRNOTAVAIL'
            ? new UsageError(`{host} ${host}: not an address of this machine`)
            : e.code === 'EACCES'
              ? new UsageError(`{port} ${opts.port}: not allowed for this user (ports below 1024 need privileges)`)
              : e,
      ),
    );
    server.listen(opts.port, host, () => ok());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return { url: `http://${shown}:${port}/`, close: () => new Promise((r) => server.close(() => r())) };
}
