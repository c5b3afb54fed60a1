import { randomFillSync } from 'node:crypto';

/** Random bytes drawn in blocks: one system call per 256 ids of 16 bytes, not one per id. */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

function random(bytes: number): Buffer {
  if (bytes > POOL_BYTES) return randomFillSync(Buffer.allocUnsafe(bytes));
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  // A copy: bytes handed out are never handed out again (the offset only moves forward).
  const out = Buffer.from(pool.subarray(offset, offset + bytes));
  offset += bytes;
  return out;
}

/** Prefixed, unguessable ids (`req_…`). No `:` (BullMQ ids may not contain it). */
export function newId(prefix: string, bytes = 16): string {
  return `${prefix}_${random(bytes).toString('base64url')}`;
}
