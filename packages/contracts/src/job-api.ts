import { z } from 'zod';
import { RouteStep } from './route.ts';
import { ChatCompletion } from './chat.ts';
import { ErrorBody } from './errors.ts';
import { JobState } from './jobs.ts';

/** `GET /v1/jobs/:id`: status, and the result (same shape as the HTTP response) or the error. */
export const JobView = z.object({
  id: z.string(),
  object: z.literal('job'),
  status: JobState,
  /** The model asked for (the result's `model` names the one that served it). */
  model: z.string().optional(),
  /** Epoch seconds; null when the record does not say. */
  created_at: z.number().nullable().optional(),
  result: ChatCompletion.optional(),
  error: ErrorBody.shape.error.optional(),
  /** Once answered: every provider call made, the answering one last (see `RouteStep`). */
  attempts: z.array(RouteStep).optional(),
  /** Sequence number of the terminal frame, once finished. */
  last_seq: z.number().int().positive().optional(),
});
export type JobView = z.infer<typeof JobView>;

/** `POST /v1/jobs` (202): the queued job, and how to follow it over the WebSocket. */
export const SubmittedJob = z.object({
  id: z.string(),
  object: z.literal('job'),
  status: z.literal('queued'),
  model: z.string(),
  created_at: z.number(),
  stream: z
    .object({
      url: z.string(),
      subscribe: z.object({ op: z.literal('subscribe'), job: z.string(), after: z.number() }),
    })
    .optional(),
});
export type SubmittedJob = z.infer<typeof SubmittedJob>;
