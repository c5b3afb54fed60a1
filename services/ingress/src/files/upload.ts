import type { Readable } from 'node:stream';
import { GatewayError } from '@faregate/contracts/errors';

export interface UploadCheck {
  bytes: number;
  lines: number;
  /** Why the upload is refused, once known (the rest of the stream is then discarded). */
  refused?: GatewayError;
}

const invalid = (
  message: string,
  code: 'invalid_request_error' | 'payload_too_large' = 'invalid_request_error',
) => new GatewayError({ code, message, param: 'file' });

/**
 * The upload's bytes as they arrive, counted (bytes, non-blank lines) and checked against the limits.
 * Past a limit (or on a byte that cannot be in a text file) nothing more is yielded, but the part is
 * read to its end, so the caller gets the error as an answer rather than a reset connection.
 */
export async function* checkedUpload(
  file: Readable,
  limits: { maxBytes: number; maxLines: number },
  check: UploadCheck,
): AsyncIterable<Buffer> {
  let content = false;
  // UTF-8 checked as it streams (a sequence may span chunks): invalid bytes would otherwise reach
  // the model as U+FFFD in place of what the caller wrote.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const notUtf8 = () =>
    invalid('The file is not valid UTF-8: a batch input file is JSONL text encoded as UTF-8.');
  for await (const chunk of file as AsyncIterable<Buffer>) {
    if (check.refused) continue;
    check.bytes += chunk.length;
    if (check.bytes > limits.maxBytes) {
      check.refused = invalid(
        `File is too large: the limit is ${limits.maxBytes} bytes (${Math.floor(limits.maxBytes / 1024 / 1024)} MB).`,
        'payload_too_large',
      );
      continue;
    }
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (c === 10) {
        if (content) check.lines++;
        content = false;
      } else if (c === 0) {
        check.refused = invalid(
          'The file is not a text file: a batch input file is JSONL (one JSON object per line).',
        );
        break;
      } else if (c !== 32 && c !== 13 && c !== 9) content = true;
    }
    if (!check.refused) {
      try {
        utf8.decode(chunk, { stream: true });
      } catch {
        check.refused = notUtf8();
      }
    }
    if (!check.refused && check.lines > limits.maxLines) {
      check.refused = invalid(
        `The file has more than ${limits.maxLines} lines (requests), the most a batch file may have.`,
      );
    }
    if (!check.refused) yield chunk;
  }
  if (!check.refused) {
    try {
      utf8.decode();
    } catch {
      // The file ends inside a multi-byte sequence.
      check.refused = notUtf8();
    }
  }
  if (content && !check.refused) {
    check.lines++;
    if (check.lines > limits.maxLines)
      check.refused = invalid(
        `The file has more than ${limits.maxLines} lines (requests), the most a batch file may have.`,
      );
  }
}
