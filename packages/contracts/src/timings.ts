import { z } from 'zod';

/**
 * Timings the ingress and the workers must agree on, so both services' configs take their defaults
 * (and their parsing) from here: `...sharedTimings` in each env schema. Set the variables to the
 * same values for both services too.
 */
export const TIMING_DEFAULTS = {
  /** Replay window of streamed and async jobs: their frames, record and result. */
  STREAM_TTL_SECONDS: 86_400,
  /** How long a non-streaming call's frames live (its caller waits on them live). */
  SYNC_TTL_SECONDS: 300,
  /**
   * How long an interactive request handed to a pool's fast lane waits for a free worker before it
   * goes to the pool's BullMQ queue.
   */
  FAST_LANE_GRACE_MS: 300,
} as const;

const int = (def: number) => z.coerce.number().int().positive().default(def);

/** The env schema fields of the shared timings, with their shared defaults. */
export const sharedTimings = {
  STREAM_TTL_SECONDS: int(TIMING_DEFAULTS.STREAM_TTL_SECONDS),
  SYNC_TTL_SECONDS: int(TIMING_DEFAULTS.SYNC_TTL_SECONDS),
  FAST_LANE_GRACE_MS: int(TIMING_DEFAULTS.FAST_LANE_GRACE_MS),
};
