import { z } from 'zod';
import { Metadata } from './chat.ts';

/** OpenAI's file object (`/v1/files`). */
export const FileObject = z.object({
  id: z.string(),
  object: z.literal('file'),
  bytes: z.number().int().nonnegative(),
  created_at: z.number().int(),
  expires_at: z.number().int().nullable(),
  filename: z.string(),
  purpose: z.string(),
  status: z.literal('processed'),
  status_details: z.null(),
});
export type FileObject = z.infer<typeof FileObject>;

/** Purposes callers may upload with, and those the gateway writes (batch results). */
export const UPLOAD_PURPOSES = ['batch'] as const;

/**
 * The endpoints a batch may target: the doors whose requests run as jobs (as OpenAI's Batch API:
 * chat completions, embeddings, responses). Every line's `url` is the batch's endpoint.
 */
export const BATCH_ENDPOINTS = ['/v1/chat/completions', '/v1/embeddings', '/v1/responses'] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];

/**
 * OpenAI's expiration policy of a file (`expires_after` on upload, `output_expires_after` on a
 * batch): `seconds` after the file's creation, from an hour to 30 days.
 */
export const ExpiresAfter = z.strictObject({
  anchor: z.literal('created_at'),
  seconds: z.number().int().min(3_600).max(2_592_000),
});
export type ExpiresAfter = z.infer<typeof ExpiresAfter>;

/** `POST /v1/batches`. */
export const BatchCreate = z.strictObject({
  input_file_id: z.string().min(1).max(200),
  endpoint: z.enum(BATCH_ENDPOINTS),
  completion_window: z.literal('24h'),
  metadata: Metadata.nullable().optional(),
  /** The expiry of the batch's output and error files. */
  output_expires_after: ExpiresAfter.optional(),
});
export type BatchCreate = z.infer<typeof BatchCreate>;

/** One line of a batch input file. */
export const BatchInputLine = z.object({
  custom_id: z.string().min(1).max(512),
  method: z.literal('POST'),
  url: z.string(),
  body: z.record(z.string(), z.unknown()),
});
export type BatchInputLine = z.infer<typeof BatchInputLine>;

export const BATCH_STATUSES = [
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
] as const;
export const BatchStatus = z.enum(BATCH_STATUSES);
export type BatchStatus = z.infer<typeof BatchStatus>;

/** An entry of a batch's `errors.data` (validation), naming the line (1-based). */
export const BatchError = z.object({
  code: z.string(),
  message: z.string(),
  param: z.string().nullable(),
  line: z.number().int().nullable(),
});
export type BatchError = z.infer<typeof BatchError>;
export const BatchErrors = z.array(BatchError);

/** A line of a batch output or error file. */
export const BatchOutputLine = z.object({
  id: z.string(),
  custom_id: z.string(),
  response: z.object({ status_code: z.number().int(), request_id: z.string(), body: z.unknown() }).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export type BatchOutputLine = z.infer<typeof BatchOutputLine>;

/**
 * OpenAI's batch `usage`: the tokens of the batch's lines that ended with an answer, summed as they
 * end (all zero before any has). Chat and Responses lines give input (prompt), cached, output
 * (completion) and reasoning tokens; embeddings lines input tokens only.
 */
export const BatchUsage = z.object({
  input_tokens: z.number().int().nonnegative(),
  input_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative() }),
  output_tokens: z.number().int().nonnegative(),
  output_tokens_details: z.object({ reasoning_tokens: z.number().int().nonnegative() }),
  total_tokens: z.number().int().nonnegative(),
});
export type BatchUsage = z.infer<typeof BatchUsage>;

/** OpenAI's batch object. */
export const BatchObject = z.object({
  id: z.string(),
  object: z.literal('batch'),
  endpoint: z.string(),
  /**
   * The model the batch's requests name (the first line that names one, for a batch whose lines
   * name several): absent until the input file is validated, as OpenAI's SDKs type it (optional, not null).
   */
  model: z.string().optional(),
  errors: z.object({ object: z.literal('list'), data: BatchErrors }).nullable(),
  input_file_id: z.string(),
  completion_window: z.string(),
  status: BatchStatus,
  output_file_id: z.string().nullable(),
  error_file_id: z.string().nullable(),
  created_at: z.number().int(),
  in_progress_at: z.number().int().nullable(),
  expires_at: z.number().int().nullable(),
  finalizing_at: z.number().int().nullable(),
  completed_at: z.number().int().nullable(),
  failed_at: z.number().int().nullable(),
  expired_at: z.number().int().nullable(),
  cancelling_at: z.number().int().nullable(),
  cancelled_at: z.number().int().nullable(),
  request_counts: z.object({
    total: z.number().int(),
    completed: z.number().int(),
    failed: z.number().int(),
  }),
  metadata: z.record(z.string(), z.string()).nullable(),
  usage: BatchUsage,
});
export type BatchObject = z.infer<typeof BatchObject>;

/** What a batch keeps of the key that created it, for its lines' admission. */
export const BatchPrincipal = z.object({
  accountId: z.string(),
  keyId: z.string(),
  scopes: z.array(z.string()),
  allowedModels: z.array(z.string()).nullable(),
  limits: z
    .object({
      keyRpm: z.number().optional(),
      keyTpm: z.number().optional(),
      accountRpm: z.number().optional(),
      accountTpm: z.number().optional(),
    })
    .optional(),
});
export type BatchPrincipal = z.infer<typeof BatchPrincipal>;

/** `?after=&limit=` of the list routes (OpenAI: limit 1 to 100, default 20). */
export const ListQuery = z.object({
  after: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(20),
  order: z.enum(['asc', 'desc']).default('desc'),
  purpose: z.string().max(64).optional(),
});
