import { createHmac, timingSafeEqual } from 'node:crypto';
import { UsageError } from '../errors.js';
import { readBounded } from '../io/bounded.js';

/**
 * The queue's shared key: coordinators sign every job with it and workers sign every result, so a
 * client of Redis without the key can neither make a worker run anything nor make a coordinator take
 * a result (docs/queue.md: trust model). HMAC-SHA256 over the exact JSON text that travels.
 */

/** Shortest key accepted: 32 characters (`openssl rand -hex 32` gives 64). */
export const MIN_KEY_LENGTH = 32;

/** Largest signed job or result text a worker or coordinator reads (a crafting job lists its whole X). */
export const MAX_SIGNED_BYTES = 32 * 1024 * 1024;

/** What travels on the queue: the JSON text of a job or a result and its HMAC. */
export interface Sealed {
  body: string;
  mac: string;
}

/**
 * The key from `file` (its first line) or else from the environment's UAP_QUEUE_KEY. `field` names
 * the option in messages. Never read from a command-line value: command lines end up in run folders.
 */
export function queueKey(file: string | undefined, field = 'queueKey'): string {
  let key: string;
  let where: string;
  if (file) {
    key = readBounded(file, { what: `{${field}}`, maxBytes: 4096 })
      .toString('utf8')
      .split('\n')[0]
      .trim();
    where = `{${field}} ${file}`;
  } else {
    key = (process.env.UAP_QUEUE_KEY ?? '').trim();
    where = 'UAP_QUEUE_KEY';
    if (!key)
      throw new UsageError(
        `{${field}}: the queue needs a key its coordinators and workers share; put one in a file (openssl rand -hex 32 > queue.key) and pass {${field}} queue.key, or set UAP_QUEUE_KEY`,
      );
  }
  if (key.length < MIN_KEY_LENGTH)
    throw new UsageError(
      `${where}: the queue key has ${key.length} characters, expected at least ${MIN_KEY_LENGTH} (openssl rand -hex 32)`,
    );
  return key;
}

function hmac(key: string, purpose: string, ...parts: string[]): string {
  const h = createHmac('sha256', key).update(purpose);
  for (const p of parts) h.update('\n').update(p);
  return h.digest('hex');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A job of kind `name`, signed by the coordinator. */
export function sealJob(key: string, name: string, job: object): Sealed {
  const body = JSON.stringify(job);
  return { body, mac: hmac(key, 'uap job', name, body) };
}

/** A job's id on the queue: keyed, so no one without the key can predict it (and plant a result under it). */
export function jobId(key: string, name: string, sealed: Sealed, index: number): string {
  return `${name}-${hmac(key, 'uap job id', sealed.mac).slice(0, 32)}-${index}`;
}

/** Whether `data` is a sealed job or result of the shape this uap writes (anything else is refused unread). */
export function isSealed(data: unknown): data is Sealed {
  if (typeof data !== 'object' || data === null) return false;
  const { body, mac } = data as Record<string, unknown>;
  return typeof body === 'string' && typeof mac === 'string' && body.length <= MAX_SIGNED_BYTES && /^[0-9a-f]{64}$/.test(mac);
}

/** The job's text when its signature is this key's, else null. */
export function openJob(key: string, name: string, data: unknown): string | null {
  return isSealed(data) && same(hmac(key, 'uap job', name, data.body), data.mac) ? data.body : null;
}

/** A worker's result, bound to the job it answers (its signature) and signed with the key. */
export function sealResult(key: string, job: Sealed, result: unknown): Sealed {
  const body = JSON.stringify(result);
  return { body, mac: hmac(key, 'uap result', job.mac, body) };
}

/** The result's text when a holder of the key signed it for this very job, else null. */
export function openResult(key: string, job: Sealed, data: unknown): string | null {
  return isSealed(data) && same(hmac(key, 'uap result', job.mac, data.body), data.mac) ? data.body : null;
}
