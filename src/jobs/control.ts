import type { Log } from '../log.js';

/** What every job takes besides its options: where its messages go and a way to stop it (progress callbacks are each job's own). */
export interface JobControl {
  log?: Log;
  /** Stops the job at its next safe point (a crafting job keeps its last checkpoint). */
  signal?: AbortSignal;
}
