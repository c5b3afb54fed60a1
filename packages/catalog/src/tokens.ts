import type { ChatRequest, ContentPart } from '@faregate/contracts/chat';

/**
 * An upper bound of the prompt tokens any provider bills for a request, without a tokenizer.
 *
 * Text: every tokenizer the gateway talks to is byte-level BPE (OpenAI o200k/cl100k, Anthropic,
 * Llama 3) or SentencePiece with byte fallback (Gemini): each token stands for at least one byte of
 * the UTF-8 text, so the byte length of the text is at least its token count, whatever the script
 * (digits, CJK, emoji, one-letter words). We count the bytes of each message's JSON, which is longer
 * still (quotes, keys, escapes), and add a per-message allowance for the chat template (role
 * markers, a SentencePiece dummy prefix). Media has no text to count: an image costs at most its
 * provider's documented per-image maximum, a file (PDF) its bytes plus its pages as images, audio its
 * bytes. Tool definitions cost their JSON plus the tool-use prompt providers add.
 *
 * This sizes admission holds (a hold under the real cost lets an account go below zero), so it errs
 * high: a plain-English prompt is held at about 4× its tokens, which a held amount can afford.
 */

/** Which model the prompt goes to (image costs differ per provider and model). */
export interface TokenTarget {
  provider: string;
  model: string;
}

/** Chat template: role markers, separators, a name (OpenAI documents 3–4 per message). */
export const MESSAGE_OVERHEAD = 16;
/** Reply priming and framing of the whole prompt. */
export const PROMPT_OVERHEAD = 16;
/** The tool-use system prompt providers add when tools are present (Anthropic: 346 tokens), plus framing. */
export const TOOLS_OVERHEAD = 512;
export const TOOL_OVERHEAD = 32;
/** Structured output instructions added for `response_format`. */
export const RESPONSE_FORMAT_OVERHEAD = 64;

/** Gemini: 258 tokens per 768×768 tile and no published cap; we hold 64 tiles (a 6144 px square). */
const GEMINI_IMAGE_MAX = 64 * 258;

/**
 * The most one image costs, from the providers' vision docs: OpenAI tiles (85 + 170 per 512 px tile,
 * at most 8 tiles after scaling) or 32 px patches (at most 1536, × up to 2.46 for the nano models);
 * gpt-4o-mini bills images at 2833 + 5667 per tile; Anthropic resizes anything over ~1.15 megapixels,
 * so an image is at most ~1,600 tokens (width × height / 750).
 */
export function imageTokensMax(target?: TokenTarget): number {
  switch (target?.provider) {
    case 'openai':
      return target.model.startsWith('gpt-4o-mini') ? 2833 + 8 * 5667 : Math.ceil(1536 * 2.46);
    case 'anthropic':
      return 1_600;
    case 'gemini':
      return GEMINI_IMAGE_MAX;
    default:
      // Other providers (OpenAI-compatible hosts, self-hosted): the largest bound above but gpt-4o-mini's.
      return GEMINI_IMAGE_MAX;
  }
}

/** Pages a file part may hold (Anthropic and OpenAI: 100 per request) × the most a page costs as an image. */
const FILE_PAGES_MAX = 100;

/** A prompt measured once: text bytes (already an upper bound of tokens) and the media to price per target. */
export interface PromptMeasure {
  /** Token bound of everything except images and files' pages (text bytes, overheads, media bytes). */
  tokens: number;
  images: number;
  files: number;
}

/** UTF-8 byte length (a lone surrogate counts as the 3-byte replacement character). */
export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** A content part with its media payload left out (counted on its own), for the JSON byte count. */
function partText(p: ContentPart): { json: ContentPart; mediaTokens: number; image: boolean; file: boolean } {
  switch (p.type) {
    case 'image_url':
      return {
        json: { ...p, image_url: { ...p.image_url, url: '' } },
        mediaTokens: 0,
        image: true,
        file: false,
      };
    case 'input_audio':
      return {
        json: { ...p, input_audio: { ...p.input_audio, data: '' } },
        mediaTokens: utf8Bytes(p.input_audio.data),
        image: false,
        file: false,
      };
    case 'file':
      return {
        json: { ...p, file: { ...p.file, file_data: '' } },
        mediaTokens: utf8Bytes(p.file.file_data ?? ''),
        image: false,
        file: true,
      };
    default:
      return { json: p, mediaTokens: 0, image: false, file: false };
  }
}

/** Measures a request once; `inputBound` then prices its media for each candidate model. */
export function measurePrompt(req: ChatRequest): PromptMeasure {
  let tokens = PROMPT_OVERHEAD;
  let images = 0;
  let files = 0;
  for (const m of req.messages) {
    tokens += MESSAGE_OVERHEAD;
    const content = 'content' in m ? m.content : undefined;
    if (Array.isArray(content)) {
      const parts: ContentPart[] = [];
      for (const p of content) {
        const t = partText(p);
        parts.push(t.json);
        tokens += t.mediaTokens;
        if (t.image) images++;
        if (t.file) files++;
      }
      tokens += utf8Bytes(JSON.stringify({ ...m, content: parts }));
    } else {
      tokens += utf8Bytes(JSON.stringify(m));
    }
  }
  if (req.tools?.length) {
    tokens += TOOLS_OVERHEAD + TOOL_OVERHEAD * req.tools.length + utf8Bytes(JSON.stringify(req.tools));
    if (req.tool_choice) tokens += utf8Bytes(JSON.stringify(req.tool_choice));
  }
  if (req.response_format)
    tokens += RESPONSE_FORMAT_OVERHEAD + utf8Bytes(JSON.stringify(req.response_format));
  return { tokens, images, files };
}

/** The prompt-token bound of a measured request on `target` (unknown target: the largest media costs). */
export function inputBound(m: PromptMeasure, target?: TokenTarget): number {
  const image = imageTokensMax(target);
  return m.tokens + m.images * image + m.files * FILE_PAGES_MAX * Math.max(image, 3_000);
}

/**
 * At least as many prompt tokens as any provider bills for `req` (see the top of this file). One
 * function for admission holds (ingress) and any other estimate that must not fall short.
 */
export function upperBound(req: ChatRequest, target?: TokenTarget): number {
  return inputBound(measurePrompt(req), target);
}

/**
 * An embeddings request's input measured like a prompt: text bytes (an upper bound of tokens) per
 * text, or a token array's length, plus a small overhead per input. No media.
 */
export function measureEmbeddingsInput(inputs: readonly (string | readonly number[])[]): PromptMeasure {
  let tokens = 0;
  for (const x of inputs) tokens += MESSAGE_OVERHEAD + (typeof x === 'string' ? utf8Bytes(x) : x.length);
  return { tokens, images: 0, files: 0 };
}
