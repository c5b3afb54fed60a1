import type { ChatMessage, ContentPart } from '@faregate/contracts/chat';
import { argumentsObject } from '@faregate/catalog/capabilities';
import { invalidParam } from './errors.ts';

type Content = Extract<ChatMessage, { role: 'user' }>['content'];

/** Text of a string-or-parts content; non-text parts refused where only text makes sense. */
export function textOf(content: Content | null | undefined, param: string): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  let s = '';
  for (const p of content) {
    if (p.type === 'text') s += p.text;
    else if (p.type === 'refusal') s += p.refusal;
    else throw invalidParam(param, `content part type '${p.type}' is not supported here by this provider`);
  }
  return s;
}

export interface DataUrl {
  mediaType: string;
  data: string;
}

/** `data:image/png;base64,....` → parts; undefined when not a base64 data URL. */
export function parseDataUrl(url: string): DataUrl | undefined {
  if (!url.startsWith('data:')) return undefined;
  const comma = url.indexOf(',');
  if (comma < 0) return undefined;
  const meta = url.slice(5, comma);
  if (!meta.endsWith(';base64')) return undefined;
  return { mediaType: meta.slice(0, -7) || 'application/octet-stream', data: url.slice(comma + 1) };
}

export const isHttpUrl = (url: string): boolean => url.startsWith('https://') || url.startsWith('http://');

/** Guess an image MIME type from a URL path (Gemini fileData needs one). */
export function mimeFromUrl(url: string): string {
  const path = url.split(/[?#]/, 1)[0]?.toLowerCase() ?? '';
  if (path.endsWith('.png')) return 'image/png';
  if (path.endsWith('.gif')) return 'image/gif';
  if (path.endsWith('.webp')) return 'image/webp';
  if (path.endsWith('.heic')) return 'image/heic';
  if (path.endsWith('.pdf')) return 'application/pdf';
  return 'image/jpeg';
}

export type { ContentPart };

/** Parse tool-call arguments (a JSON string) into an object, as Anthropic/Gemini want one. */
export function parseArguments(args: string, param: string): Record<string, unknown> {
  const v = argumentsObject(args);
  if (v === undefined) throw invalidParam(param, 'tool call arguments must be a JSON object string');
  return v;
}

/** Stop sequences as an array. */
export function stopList(stop: string | string[] | null | undefined): string[] | undefined {
  if (stop == null) return undefined;
  const list = typeof stop === 'string' ? [stop] : stop;
  return list.length > 0 ? list : undefined;
}
