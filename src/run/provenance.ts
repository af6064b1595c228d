import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ImageItem } from '../data/source.js';
import { itemName } from '../data/source.js';
import { packageVersion } from '../paths.js';

/** SHA-256 of files in order (streamed: a model of hundreds of MB is not held in memory twice). */
async function sha256Files(files: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of files) for await (const chunk of createReadStream(f)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** A model's files: the file itself, and for a TF.js model.json the weight shards it lists. */
function modelFiles(file: string): string[] {
  if (!file.endsWith('.json')) return [file];
  try {
    const manifest = (JSON.parse(readFileSync(file, 'utf8')) as { weightsManifest?: { paths: string[] }[] }).weightsManifest ?? [];
    return [file, ...manifest.flatMap((m) => m.paths.map((p) => join(dirname(file), p))).filter((p) => existsSync(p))];
  } catch {
    return [file];
  }
}

/** SHA-256 of a model's files (for a TF.js model.json, with its weight shards), or null when it has no file. */
export async function modelSha256(file: string | undefined): Promise<string | null> {
  return file && existsSync(file) ? sha256Files(modelFiles(file)) : null;
}

/**
 * The command line as config.json and the report keep it, with the secret of every URL's credentials
 * (`redis://:password@host`, `rediss://user:password@host`) replaced by *** : run folders and reports
 * are shared, queue passwords must not be.
 */
export function commandLine(argv: readonly string[] = process.argv.slice(1)): string {
  return argv
    .map((a) =>
      a.replace(
        /([a-z][a-z0-9+.-]*:\/\/)([^@/\s]*)@/gi,
        (_, scheme: string, who: string) => `${scheme}${who.includes(':') ? `${who.split(':')[0]}:***` : '***'}@`,
      ),
    )
    .join(' ');
}

/**
 * Where a result came from, for config.json and the report: uap's version, the command line, a hash of
 * the model's files and of the list of images (names and labels, in order), runtime and seed.
 */
export async function provenance(opts: {
  modelFile?: string;
  runsOn?: string;
  seed?: number;
  data?: ImageItem[];
  val?: ImageItem[];
}): Promise<Record<string, unknown>> {
  const list = (items?: ImageItem[]) =>
    items
      ? createHash('sha256')
          .update(items.map((i) => `${itemName(i)}\t${i.label ?? ''}`).join('\n'))
          .digest('hex')
      : null;
  return {
    uapVersion: packageVersion(),
    command: commandLine(),
    node: process.version,
    runtime: opts.runsOn ?? 'TF.js',
    seed: opts.seed ?? null,
    modelFile: opts.modelFile ?? null,
    modelSha256: await modelSha256(opts.modelFile),
    dataListSha256: list(opts.data),
    valListSha256: list(opts.val),
    date: new Date().toISOString(),
  };
}
