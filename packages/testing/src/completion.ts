/**
 * A complete, minimal chat.completion (the shape of a done frame's `result`), for tests that need one
 * to exist and do not look inside it. Spelled out rather than built with the contracts' helpers, so
 * this package depends on none of ours.
 */
export function sampleCompletion(id = 'req_x') {
  return {
    id,
    object: 'chat.completion' as const,
    created: 0,
    model: 'm',
    choices: [
      {
        index: 0,
        message: { role: 'assistant' as const, content: '', refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: 'stop' as const,
      },
    ],
    usage: {
      prompt_tokens: 0,
      completion_tokens: 0,
      total_tokens: 0,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    },
    system_fingerprint: null,
    service_tier: 'default',
  };
}
