/**
 * Vector size assumed when a request sets no `dimensions`: OpenAI's and Gemini's largest native
 * size is 3,072; open models (Qwen3-Embedding-8B, NV-Embed) reach 4,096.
 */
const MAX_NATIVE_DIMENSIONS = 4096;
/**
 * Characters one value takes at most: base64 float32 is exactly 16/3; a float in JSON
 * (`-0.0012345678901234567,`, or a value per line with a pretty-printer's indent) stays under 32.
 */
const VALUE_BYTES = { base64: 16 / 3, float: 32 } as const;
/** Each item's wrapper (`{"object": "embedding", "index": 2047, "embedding": …}`, whitespace). */
const ITEM_BYTES = 512;
/** The list's own fields (`object`, `model`, `usage`). */
const LIST_BYTES = 64 * 1024;

/**
 * The most an embeddings answer can weigh: inputs × dimensions × bytes per value in the encoding
 * asked for, with margin. The response cap of such a call, so a list as large as the API allows
 * (2,048 inputs of 3,072 floats: 34 MB in base64, 200 MB as JSON floats) is read, and a runaway
 * body still is not.
 */
export function embeddingsAnswerBytes(
  inputs: number,
  dimensions: number | undefined,
  encoding: keyof typeof VALUE_BYTES,
): number {
  const item = (dimensions ?? MAX_NATIVE_DIMENSIONS) * VALUE_BYTES[encoding] + ITEM_BYTES;
  return Math.ceil(inputs * item) + LIST_BYTES;
}

/** OpenAI's base64 embedding (the little-endian float32 bytes) as floats; undefined when it is not one. */
export function float32FromBase64(s: string): number[] | undefined {
  const buf = Buffer.from(s, 'base64');
  // Node skips what is not base64 (a regex over megabytes costs more than the decode): a string
  // that was not whole base64 decodes to fewer bytes than its length says.
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  if (s.length % 4 !== 0 || buf.length !== (s.length / 4) * 3 - pad || buf.length % 4 !== 0) return undefined;
  const v = new Array<number>(buf.length / 4);
  for (let i = 0; i < v.length; i++) v[i] = buf.readFloatLE(i * 4);
  return v;
}
