import { UsageError } from '../errors.js';

/**
 * The Redis connection behind a queue URL (BullMQ's job engine). redis:// or rediss:// (TLS), with
 * an optional password (redis://:pass@host:port/db). The password never appears in messages.
 */

/** The BullMQ queue every uap coordinator and worker of one Redis share. */
export const QUEUE_NAME = 'uap-shards';

export interface QueueConnection {
  url: string;
  /** BullMQ's workers need commands that block without a retry cap. */
  maxRetriesPerRequest: null;
  tls?: Record<string, never>;
  /** Fails fast when Redis is not there, instead of queueing commands offline forever. */
  enableOfflineQueue: boolean;
}

/** The URL with its password replaced by ***, for messages. */
export function redacted(url: string): string {
  // As typed, but for the password (URL's own printing would also add a trailing slash).
  return url.replace(/^([a-z]+:\/\/)([^@/]*:)[^@/]*@/i, '$1$2***@').replace(/^([a-z]+:\/\/)[^@/:]+@/i, '$1***@');
}

/** Checks a queue URL (`field` names the option in the message) and gives the connection options. */
export function queueConnection(url: string, field = 'queue'): QueueConnection {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`{${field}} ${redacted(url)}: expected redis://[:password@]host:port[/db] or rediss://... (TLS)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new UsageError(`{${field}} ${redacted(url)}: expected a redis:// or rediss:// URL (BullMQ on Redis), not ${u.protocol}`);
  if (!u.hostname) throw new UsageError(`{${field}} ${redacted(url)}: the URL names no host`);
  return { url, maxRetriesPerRequest: null, enableOfflineQueue: true, ...(u.protocol === 'rediss:' ? { tls: {} } : {}) };
}

/**
 * Waits for a BullMQ object's connection, or fails with one line naming the URL: at the first
 * connection error (Redis refused) or after `seconds`. Its later errors go to `onError` (without a
 * listener, BullMQ would print each reconnection attempt's stack trace).
 */
export async function connected(
  what: { waitUntilReady(): Promise<unknown>; on(event: 'error', listener: (e: Error) => void): unknown },
  url: string,
  opts: { field?: string; seconds?: number; onError?: (e: Error) => void } = {},
): Promise<void> {
  const field = opts.field ?? 'queue';
  const seconds = opts.seconds ?? 10;
  let timer: NodeJS.Timeout | undefined;
  let failFirst: ((e: Error) => void) | undefined;
  what.on('error', (e: Error) => (failFirst ? failFirst(e) : opts.onError?.(e)));
  const failed = new Promise<never>((_, reject) => {
    failFirst = (e) => reject(new UsageError(`{${field}} ${redacted(url)}: cannot connect (${e.message.split('\n')[0]})`));
    timer = setTimeout(
      () =>
        reject(
          new UsageError(`{${field}} ${redacted(url)}: no Redis answered within ${seconds} s (is redis-server running and reachable?)`),
        ),
      seconds * 1000,
    );
  });
  try {
    await Promise.race([what.waitUntilReady(), failed]);
  } finally {
    failFirst = undefined;
    clearTimeout(timer);
  }
}
