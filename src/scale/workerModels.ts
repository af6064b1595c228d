import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Classifier } from '../classifier/classifier.js';
import { resolveCardPath } from '../classifier/card.js';
import { bundledModels, findCard, loadModel } from '../import/load.js';
import { modelSha256 } from '../run/provenance.js';
import type { Backend } from '../engine/backend.js';
import type { Log } from '../log.js';
import { UsageError } from '../errors.js';
import { modelPrint, type ScoreShard } from './shards.js';

/**
 * The models a worker may load: bundled names and its operator's --model list (cards, files, and
 * folders whose every card is allowed: a defence run's rounds), matched to a job by the hash of their
 * files, never by a path from the job; the two used last stay loaded.
 */

/** A model a worker's operator allows: its spec, its model file, and the hash of its files (at first need). */
interface AllowedModel {
  spec: string;
  file: string;
  files?: Promise<string | null>;
  /** The file's state when hashed: a model rewritten in place is hashed again. */
  stamp?: string;
}

function allowedModel(spec: string, assets: string): AllowedModel {
  const card = findCard(spec, {}, assets);
  return { spec, file: resolveCardPath(card, card.model, assets) };
}

function filesOf(a: AllowedModel): Promise<string | null> {
  const st = statSync(a.file, { throwIfNoEntry: false });
  const stamp = st ? `${st.size}:${st.mtimeMs}` : 'gone';
  if (!a.files || a.stamp !== stamp) {
    a.files = modelSha256(a.file);
    a.stamp = stamp;
  }
  return a.files;
}

/** Whether `spec` names a folder that is not itself a model (no card or model.json in it). */
function isModelFolder(spec: string): boolean {
  if (!existsSync(spec) || !statSync(spec).isDirectory()) return false;
  return !['card.json', 'model.card.json', 'model.json'].some((f) => existsSync(join(spec, f)));
}

/** Model cards (card.json) under `dir`, at most 6 folders deep and 10,000 folders in all. */
function cardsUnder(dir: string): string[] {
  const out: string[] = [];
  let budget = 10_000;
  const walk = (d: string, depth: number) => {
    if (depth > 6 || budget-- <= 0) return;
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries)
      if (e.isDirectory()) walk(join(d, e.name), depth + 1);
      else if (e.isFile() && e.name === 'card.json') out.push(join(d, e.name));
  };
  walk(dir, 0);
  return out;
}

/** Models a worker keeps loaded at once. */
const MODELS_KEPT = 2;

/** A loaded model and the fingerprint a job's must match. */
export interface LoadedModel {
  model: Classifier;
  print: string;
}

export class WorkerModels {
  private readonly allowed: AllowedModel[] = [];
  private readonly folders: string[] = [];
  private readonly found = new Map<string, AllowedModel>();
  private readonly loaded = new Map<string, Promise<LoadedModel>>();

  constructor(
    specs: readonly string[],
    private readonly assets: string,
    private readonly backend: Backend,
    private readonly log: Log,
  ) {
    // Each allowed model's card is found (and so checked) now, its files hashed at first need.
    for (const spec of specs) {
      if (isModelFolder(spec)) this.folders.push(resolve(spec));
      else this.allowed.push(allowedModel(spec, assets));
    }
  }

  /** In words, for the worker's first line. */
  describe(): string {
    return ['bundled', ...this.allowed.map((a) => a.spec), ...this.folders.map((f) => `${f}/**`)].join(', ');
  }

  /** Which of the allowed models a job means: a bundled one by name, else the one whose files hash to `files`. */
  private async allowedSpec(m: ScoreShard['model'], files: string | undefined): Promise<string> {
    if (Object.hasOwn(bundledModels(), m.spec)) return m.spec;
    if (files) {
      for (const a of this.allowed) if ((await filesOf(a)) === files) return a.spec;
      for (const f of this.folders)
        for (const card of cardsUnder(f)) {
          let a = this.found.get(card);
          if (!a) {
            try {
              a = allowedModel(card, this.assets);
            } catch {
              continue; // not a card of a loadable model: not a candidate
            }
            this.found.set(card, a);
          }
          if ((await filesOf(a)) === files) return a.spec;
        }
    }
    throw new UsageError(
      `model ${basename(m.spec)}: not among this worker's models (bundled names, or a model its operator allows with uap worker --model; matched by the files' contents)`,
    );
  }

  /** The job's model, loaded (or kept from an earlier job). */
  load(m: ScoreShard['model'], files: string | undefined): Promise<LoadedModel> {
    const key = JSON.stringify([m, files]);
    let got = this.loaded.get(key);
    if (got) {
      this.loaded.delete(key); // most recently used last
      this.loaded.set(key, got);
      return got;
    }
    got = (async () => {
      const spec = await this.allowedSpec(m, files);
      const model = await loadModel(spec, { assets: this.assets, card: m.card, backend: this.backend }, this.log);
      return { model, print: await modelPrint(model) };
    })();
    got.catch(() => this.loaded.delete(key)); // a model that failed to load is tried afresh by the next shard
    this.loaded.set(key, got);
    // The two models used last stay loaded (a defence run brings a new one each round): older ones are freed.
    while (this.loaded.size > MODELS_KEPT) {
      const [oldest, old] = this.loaded.entries().next().value as [string, Promise<LoadedModel>];
      this.loaded.delete(oldest);
      void old.then((x) => x.model.dispose()).catch(() => {});
    }
    return got;
  }

  async dispose(): Promise<void> {
    for (const m of this.loaded.values()) await m.then((x) => x.model.dispose()).catch(() => {});
  }
}
