import { ThinkingBlock } from '@faregate/contracts/chat';
import { GatewayError } from '@faregate/contracts/errors';
import { z } from 'zod';

/**
 * Anthropic's signed thinking carried through the Responses API, which has no thinking blocks: the
 * gateway keeps no responses, so a reasoning item takes its thinking back to the caller in
 * `encrypted_content` (the field OpenAI gives stateless callers for exactly this), and the caller
 * sends the item back in `input` on the next turn. The value is opaque to callers; it is not
 * encrypted because it needs no secret: the thinking in it is in the item's own `content`, and
 * Anthropic checks the signature, so an altered block is Anthropic's 400, not a forgery.
 */
const SEALED = 'fg-thinking-1.';
const Sealed = z.array(ThinkingBlock).min(1).max(256);

export function sealThinking(blocks: readonly ThinkingBlock[]): string {
  return SEALED + Buffer.from(JSON.stringify(blocks)).toString('base64url');
}

/**
 * The thinking blocks a reasoning item's `encrypted_content` carries: undefined for content that is
 * not this gateway's (OpenAI's own, say: no provider behind this gateway can read it, so it is left
 * out as another provider's reasoning is); a 400 naming `param` for this gateway's form, damaged.
 */
export function openThinking(sealed: string, param: string): ThinkingBlock[] | undefined {
  if (!sealed.startsWith(SEALED)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(sealed.slice(SEALED.length), 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const blocks = Sealed.safeParse(parsed);
  if (!blocks.success)
    throw new GatewayError({
      code: 'invalid_request_error',
      message: `${param} is damaged: send back the reasoning item's encrypted_content exactly as the gateway returned it.`,
      param,
    });
  return blocks.data;
}
