import { describe, expect, it } from 'vitest';
import { anthropicAdapter } from '../anthropic/index.ts';
import { geminiAdapter } from '../gemini/index.ts';
import { openaiAdapter } from '../openai/index.ts';
import { classifyInBand, safeMessage } from './errors.ts';

/**
 * What of a provider's error reaches the tenant. The gateway is multi-tenant: the operator's
 * organization / project / account ids and its account-wide limits and usage are not the tenant's to
 * read; what kind of limit was hit, for which model, when to retry, and what is wrong with the
 * tenant's own request are.
 */

const openai = (status: number, error: object, headers: Record<string, string> = {}) =>
  openaiAdapter.classifyError(status, new Headers(headers), JSON.stringify({ error }));
const anthropic = (status: number, type: string, message: string, headers: Record<string, string> = {}) =>
  anthropicAdapter.classifyError(
    status,
    new Headers(headers),
    JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_011CSHoEeqs5C35K2UUqR7Fy' }),
  );
const gemini = (status: number, error: object) =>
  geminiAdapter.classifyError(status, new Headers(), JSON.stringify({ error: { code: status, ...error } }));

/** Nothing that names the operator's account, nor its figures. */
const OPERATOR =
  /org-|organization \(|00000000-0000|[0-9a-f]{8}-[0-9a-f]{4}-|project_number|projects\/\d|123456|@example|Limit \d|Used \d|Requested \d|80,000|quotaValue/i;

describe('429s are told in the gateway words', () => {
  it("OpenAI: the model, the kind of limit and the retry, not the organization or the account's figures", () => {
    const e = openai(
      429,
      {
        message:
          'Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 7s. Visit https://platform.openai.com/account/rate-limits to learn more.',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
      { 'retry-after-ms': '7000' },
    );
    expect(e).toMatchObject({
      code: 'rate_limit_exceeded',
      retryable: true,
      retryAfterMs: 7000,
      upstreamStatus: 429,
    });
    expect(e.message).toBe(
      "provider's rate limit (requests per minute) for gpt-4o-mini was reached; retry in 7s",
    );
  });

  it('OpenAI: the retry hint from the text when no header carries one; a request over the limit by itself says so', () => {
    const tpm = openai(429, {
      message:
        'Rate limit reached for gpt-4o in organization org-AbC123xyz on tokens per min (TPM): Limit 30000, Used 29500, Requested 900. Please try again in 1m2.5s.',
      type: 'tokens',
      code: 'rate_limit_exceeded',
    });
    expect(tpm.message).toBe(
      "provider's rate limit (tokens per minute) for gpt-4o was reached; retry in 63s",
    );
    const tooLarge = openai(
      429,
      {
        message:
          'Request too large for gpt-4o in organization org-AbC123xyz on tokens per min (TPM): Limit 30000, Requested 50000. The input or output tokens must be reduced in order to run successfully.',
        type: 'tokens',
        code: 'rate_limit_exceeded',
      },
      { 'retry-after': '20' },
    );
    expect(tooLarge.message).toMatch(/^request too large .*tokens per minute.* for gpt-4o: reduce the input/);
    expect(tooLarge.message).not.toMatch(OPERATOR);
    // Waiting never helps it: not retried, no pause (other requests fit), no wait for the caller.
    expect(tooLarge.retryable).toBe(false);
    expect(tooLarge.retryAfterMs).toBeUndefined();
  });

  it('OpenAI: a quota 429 stays not retryable, and says nothing of the account', () => {
    const e = openai(429, {
      message: 'You exceeded your current quota, please check your plan and billing details.',
      type: 'insufficient_quota',
      code: 'insufficient_quota',
    });
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: false, upstreamStatus: 429 });
    expect(e.message).toMatch(/^provider quota exhausted/);
    expect(e.message).not.toMatch(/plan and billing/);
  });

  it('Anthropic: the kind of limit and the retry, not the organization (an id or a UUID) or its limit', () => {
    for (const org of ['org-fake', '0b1c2d3e-1111-4222-8333-444455556666']) {
      const e = anthropic(
        429,
        'rate_limit_error',
        `This request would exceed the rate limit for your organization (${org}) of 80,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage.`,
        { 'retry-after': '12' },
      );
      expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: true, retryAfterMs: 12_000 });
      expect(e.message).toBe("provider's rate limit (input tokens per minute) was reached; retry in 12s");
    }
  });

  it('Gemini: the model and limit from the QuotaFailure, the retry from RetryInfo; not the project or the quota value', () => {
    const e = gemini(429, {
      status: 'RESOURCE_EXHAUSTED',
      message:
        "Quota exceeded for quota metric 'Generate Content API requests per minute' and limit 'GenerateContent request limit per minute for a region' of service 'generativelanguage.googleapis.com' for consumer 'project_number:123456789012'.",
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [
            {
              quotaMetric: 'generativelanguage.googleapis.com/generate_content_requests',
              quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
              quotaDimensions: { location: 'global', model: 'gemini-2.5-flash' },
              quotaValue: '10',
            },
          ],
        },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '27s' },
      ],
    });
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: true, retryAfterMs: 27_000 });
    expect(e.message).toBe(
      "provider's rate limit (requests per minute) for gemini-2.5-flash was reached; retry in 27s",
    );
  });

  it('Gemini: a daily quota is not retryable and says when it resets', () => {
    const e = gemini(429, {
      status: 'RESOURCE_EXHAUSTED',
      message: 'You exceeded your current quota, please check your plan and billing details.',
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [
            {
              quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier',
              quotaDimensions: { model: 'gemini-2.5-flash' },
              quotaValue: '250',
            },
          ],
        },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '18073s' },
      ],
    });
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: false, retryAfterMs: 18_073_000 });
    expect(e.message).toMatch(/^provider quota exhausted \(requests per day\) for gemini-2\.5-flash: /);
    expect(e.message).toMatch(/resets in about 5h$/);
    expect(e.message).not.toMatch(/250|FreeTier/);
  });

  it('an in-band rate-limit error (inside a 200 stream) is told the same way', () => {
    const e = classifyInBand(
      'rate_limit_exceeded',
      'Rate limit reached for gpt-4o-mini in organization org-fake on tokens per min (TPM): Limit 200000, Used 199000, Requested 1500. Please try again in 450ms.',
    );
    expect(e).toMatchObject({ code: 'rate_limit_exceeded', retryable: true });
    expect(e.message).toBe(
      "provider's rate limit (tokens per minute) for gpt-4o-mini was reached; retry in 1s",
    );
  });

  it('a 429 that says nothing usable still reads well', () => {
    expect(anthropic(429, 'rate_limit_error', 'Rate limited').message).toBe(
      "provider's rate limit was reached; retry later",
    );
  });
});

describe("the operator's provider account out of credit is the provider's refusal, not the caller's bad request", () => {
  it('Anthropic: a 400 saying the credit balance is too low is provider_unavailable, as a 402, without its text', () => {
    const e = anthropic(
      400,
      'invalid_request_error',
      'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
    );
    expect(e).toMatchObject({ code: 'provider_unavailable', retryable: false, upstreamStatus: 400 });
    expect(e.message).not.toMatch(/credit|Plans/i);
    // Any other 400 stays the caller's.
    expect(anthropic(400, 'invalid_request_error', 'messages: at least one message is required').code).toBe(
      'invalid_request_error',
    );
  });
});

describe('other provider messages: the explanation stays, the operator identifiers go', () => {
  it('Gemini project numbers, resource names, links to the project and emails are taken out', () => {
    const disabled = gemini(400, {
      status: 'INVALID_ARGUMENT',
      message:
        'Generative Language API has not been used in project 123456 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=123456 then retry.',
    });
    expect(disabled.code).toBe('invalid_request_error');
    expect(disabled.message).toMatch(
      /^Generative Language API has not been used in project \[redacted\] before/,
    );
    expect(disabled.message).not.toMatch(OPERATOR);
    const billing = gemini(400, {
      status: 'FAILED_PRECONDITION',
      message:
        'Billing required for projects/123456 (consumer: projects/123456). Contact owner@example.com or visit https://console.cloud.google.com/billing?project=my-proj-42.',
    });
    expect(billing.code).toBe('provider_unavailable');
    expect(billing.message).toMatch(/^Billing required for projects\/\[redacted\]/);
    expect(billing.message).not.toMatch(/123456|owner@|my-proj-42/);
  });

  it("an organization named in any message (OpenAI org-…, an Anthropic UUID) is taken out; a 400's explanation stays", () => {
    const slow = openai(503, {
      message: 'Slow down: your organization org-ABC123def is sending requests too quickly.',
      type: 'server_error',
    });
    expect(slow).toMatchObject({ code: 'overloaded', retryable: true });
    expect(slow.message).toBe('Slow down: your organization [redacted] is sending requests too quickly.');
    const credit = anthropic(
      400,
      'invalid_request_error',
      'Your credit balance is too low for organization 0b1c2d3e-1111-4222-8333-444455556666 (workspace "wrkspc_01AbC").',
    );
    expect(credit.message).not.toMatch(/0b1c2d3e|wrkspc_01AbC/);
    // A 400 about the tenant's own request (with its figures) is relayed as the provider worded it.
    const message =
      "Invalid 'messages[1].content': string too long. Expected a string with maximum length 10485760, but got a string with length 10485761 instead.";
    expect(
      openai(400, { message, type: 'invalid_request_error', param: 'messages', code: null }),
    ).toMatchObject({
      code: 'invalid_request_error',
      retryable: false,
      message,
    });
    const context =
      "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.";
    expect(
      openai(400, {
        message: context,
        type: 'invalid_request_error',
        param: 'messages',
        code: 'context_length_exceeded',
      }),
    ).toMatchObject({ code: 'context_length_exceeded', param: 'messages', message: context });
    const tooLong = 'prompt is too long: 208310 tokens > 200000 maximum';
    expect(anthropic(400, 'invalid_request_error', tooLong).message).toBe(tooLong);
  });

  it('safeMessage: ids after account words and in named fields; numbers about the request stay', () => {
    expect(
      safeMessage('account acct_1234 in workspace "wrkspc_01abc", Account ID: 123412341234, org_id=xyz', 'x'),
    ).toBe('account [redacted] in workspace "[redacted]", Account ID: [redacted], org_id=[redacted]');
    expect(safeMessage('your account is not active; project has been disabled', 'x')).toBe(
      'your account is not active; project has been disabled',
    );
    expect(safeMessage('The input token count (1200000) exceeds the maximum (1048576).', 'x')).toBe(
      'The input token count (1200000) exceeds the maximum (1048576).',
    );
    expect(safeMessage('Incorrect API key provided: sk-abc12***xyz9.', 'x')).toBe(
      'Incorrect API key provided: [redacted].',
    );
    expect(safeMessage('  ', 'fallback')).toBe('fallback');
  });
});
