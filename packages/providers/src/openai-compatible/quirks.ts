/**
 * How an OpenAI-compatible host differs from OpenAI itself. Data only: presets are configuration,
 * the adapter code is shared.
 */
export interface OpenAICompatibleQuirks {
  /** Which field carries the output cap. OpenAI reasoning models reject `max_tokens`; many hosts know only it. */
  maxTokensField?: 'max_tokens' | 'max_completion_tokens';
  /**
   * The host ignores `tool_choice` (Ollama). `auto` is then omitted (same meaning), `none` drops the
   * tools (same meaning), and `required` / a named function are refused with a 400.
   */
  noToolChoice?: boolean;
  /** The host rejects `stream_options`; usage then only arrives if the host sends it unasked. */
  noStreamOptions?: boolean;
  /** The host has no `developer` role: developer prompts are sent as `system` (same meaning). */
  noDeveloperRole?: boolean;
  /** The host cannot fetch remote images (Ollama): only `data:` URLs are accepted; others get a 400. */
  dataUrlImagesOnly?: boolean;
  /**
   * Request fields the host cannot honour: present → 400 naming the field (`n` only above 1). `n`,
   * `logprobs` and `top_logprobs` pass through unless listed here.
   */
  unsupported?: readonly string[];
  /**
   * Request fields the host rejects but whose loss changes nothing about the completion (e.g. `user`,
   * an abuse-tracking tag, on hosts with strict schemas): omitted.
   */
  drop?: readonly string[];
  /**
   * OpenAI account features with no counterpart elsewhere (`store`, `metadata`, `safety_identifier`,
   * `service_tier`, `prompt_cache_key`, `prompt_cache_retention`): true keeps them (OpenAI itself); otherwise they are dropped, which changes nothing
   * about the completion.
   */
  openAIAccountFields?: boolean;
  /**
   * The host's error body shape. Parsing always accepts every shape; this records the host's own for
   * fixtures and fakes: `openai` `{error:{…,code:"str"}}`, `integer-code` (vLLM) `{error:{…,code:400}}`,
   * `flat` (old vLLM) `{object:"error",message,type,code}`, `string` (vLLM auth) `{error:"Unauthorized"}`.
   */
  errorShape?: 'openai' | 'integer-code' | 'flat' | 'string';
  /**
   * The host's `/embeddings` has no `encoding_format: "base64"` (Ollama): floats are asked for, a
   * JSON answer about 4× the size of OpenAI's base64 float32 bytes.
   */
  floatEmbeddings?: boolean;
  /** Send `Authorization` even with no key (Ollama ignores it, the OpenAI SDK insists on one). */
  placeholderKey?: string;
}
