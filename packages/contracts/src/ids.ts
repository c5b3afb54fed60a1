import { randomBytes } from 'node:crypto';

/** Prefixed, unguessable ids (`req_…`). No `:` (BullMQ ids may not contain it). */
export function newId(prefix: string, bytes = 16): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}
