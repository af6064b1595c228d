/**
 * An error caused by what the user passed (a flag, a file, a card). The CLI prints its message on one
 * line and exits with code 2; anything else is a bug and keeps its stack trace.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Thrown when a run is stopped through its AbortSignal; the last checkpoint stays valid. */
export class AbortedError extends Error {
  override name = 'AbortedError';
}
