import { sql } from 'drizzle-orm';
import { bigint, customType, index, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Buffer }>({ dataType: () => 'bytea' });

/**
 * Files of the OpenAI Files API (batch inputs, batch outputs and errors), per account. The bytes
 * live behind the file storage interface (services/ingress/src/files/store.ts): in `file_chunks`
 * by default. A file is listed once its upload completed (`status` 'processed').
 */
export const files = pgTable(
  'files',
  {
    id: text('id').primaryKey(),
    accountId: text('account_id').notNull(),
    purpose: text('purpose').notNull(),
    filename: text('filename').notNull(),
    bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
    lines: integer('lines').notNull().default(0),
    status: text('status', { enum: ['uploading', 'processed'] }).notNull(),
    /** Unix seconds, as the API shows it. */
    createdAt: bigint('created_at', { mode: 'number' }).notNull(),
    /** When the file expires (Unix seconds; null: never): gone for callers from then, swept soon after. */
    expiresAt: bigint('expires_at', { mode: 'number' }),
    /** Creation order (lists page by it; many files share a second). */
    seq: bigint('seq', { mode: 'number' }).notNull().generatedAlwaysAsIdentity(),
  },
  (t) => [
    index('files_account_seq_idx').on(t.accountId, t.seq),
    index('files_expires_at_idx').on(t.expiresAt).where(sql`expires_at IS NOT NULL`),
  ],
);

/** A file's bytes in order, in chunks of about a mebibyte (Postgres storage). */
export const fileChunks = pgTable(
  'file_chunks',
  {
    fileId: text('file_id').notNull(),
    seq: integer('seq').notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.fileId, t.seq] })],
);
