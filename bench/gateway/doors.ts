/**
 * What a door adds over chat completions for the same request: the same small non-streaming prompt
 * (one short user message, 12-token reply, model `openai/gpt-4o-mini`) through
 * `POST /v1/chat/completions`, `POST /v1/messages` (Anthropic) and `POST /v1/responses` (OpenAI
 * Responses), at 1 connection, the three interleaved in rounds (so drift in the machine's load hits
 * them alike); the added p50 is each round's door p50 minus its chat p50, the median over rounds.
 * Beside it, the door's own work measured in-process, without the noise of four processes: body
 * validation and translation in, and the answer's translation out, per request (p50 over --n).
 *
 *   node bench/gateway/doors.ts [--rounds 9] [--requests 400] [--n 20000]
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { AnthropicRequest } from '../../packages/contracts/src/anthropic.ts';
import { ChatRequest, toChatCompletion, zeroUsage } from '../../packages/contracts/src/chat.ts';
import { ResponsesRequest } from '../../packages/contracts/src/responses.ts';
import * as messages from '../../services/ingress/src/doors/messages.ts';
import * as responses from '../../services/ingress/src/doors/responses.ts';
import { toResponse as responsesAnswer } from '../../services/ingress/src/doors/responses-output.ts';
import { closedLoop, median, percentile } from '../support/load.ts';
import { startBenchStack } from '../support/stack.ts';

const { values: argv } = parseArgs({
  options: {
    rounds: { type: 'string', default: '9' },
    requests: { type: 'string', default: '400' },
    n: { type: 'string', default: '20000' },
  },
});
const rounds = Number(argv.rounds);
const requests = Number(argv.requests);
const n = Number(argv.n);
const PROMPT = 'In one short sentence, what is the largest planet in the solar system?';
const MODEL = 'openai/gpt-4o-mini';

const bodies = {
  chat: {
    path: '/v1/chat/completions',
    body: { model: MODEL, messages: [{ role: 'user', content: PROMPT }] },
  },
  messages: {
    path: '/v1/messages',
    body: { model: MODEL, max_tokens: 1024, messages: [{ role: 'user', content: PROMPT }] },
  },
  responses: { path: '/v1/responses', body: { model: MODEL, input: PROMPT } },
} as const;
type Door = keyof typeof bodies;

console.log(`$ node bench/gateway/doors.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
console.log(
  `node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${fmtLoad()}`,
);

// In-process: what each door does that chat completions does not (chat's own validation subtracted).
const result = toChatCompletion(
  'req_bench',
  { provider: 'openai', model: 'gpt-4o-mini' },
  1,
  {
    model: 'gpt-4o-mini',
    content: 'Jupiter is the largest planet in the solar system, by far.',
    toolCalls: [],
    finishReason: 'stop',
    usage: { ...zeroUsage(), inputTokens: 22, outputTokens: 12 },
  },
  0n,
);
function perCall(f: () => unknown): number {
  for (let i = 0; i < 2000; i++) f();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    f();
    t.push(performance.now() - s);
  }
  return percentile(Float64Array.from(t).sort(), 50);
}
const chatCost = perCall(() => ChatRequest.parse(bodies.chat.body));
const inProcess: Record<Exclude<Door, 'chat'>, number> = {
  messages: perCall(() => {
    messages.toChatRequest(AnthropicRequest.parse(bodies.messages.body));
    return messages.toAnthropicMessage(result);
  }),
  responses: perCall(() => {
    const req = ResponsesRequest.parse(bodies.responses.body);
    responses.toChatRequest(req);
    return responsesAnswer(req, result);
  }),
};

const stack = await startBenchStack({ providers: ['openai'] });
try {
  const pool = new Pool(stack.url, { connections: 1, pipelining: 1, keepAliveTimeout: 60_000 });
  const headers = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
  const p50s: Record<Door, number[]> = { chat: [], messages: [], responses: [] };
  const measure = async (door: Door, count: number) => {
    const { path, body } = bodies[door];
    const text = JSON.stringify(body);
    const r = await closedLoop({
      concurrency: 1,
      maxRequests: count,
      maxMs: 60_000,
      send: async () => {
        const res = await pool.request({ path, method: 'POST', headers, body: text });
        const out = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`${door}: HTTP ${res.statusCode} ${out.slice(0, 200)}`);
      },
    });
    if (r.errors > 0) throw new Error(`${r.errors} failed requests, first: ${r.firstError}`);
    return percentile(r.latenciesMs, 50);
  };
  for (const door of Object.keys(bodies) as Door[]) await measure(door, 500);
  const order: Door[] = ['chat', 'messages', 'responses'];
  for (let round = 0; round < rounds; round++) {
    // Rotate who goes first, so no door always runs right after a warm-up or a slow one.
    const rot = [...order.slice(round % 3), ...order.slice(0, round % 3)];
    for (const door of rot) p50s[door].push(await measure(door, requests));
  }
  await pool.close();
  const added = (door: Door) => median(p50s[door].map((p, i) => p - p50s.chat[i]!));
  console.log(
    `\nrounds ${rounds} × ${requests} requests per door at 1 connection, load average ${fmtLoad()}\n`,
  );
  console.log(
    '| door | p50 (median of rounds) | added p50 over chat (median of per-round differences) | door work in-process, p50 |',
  );
  console.log('|---|---|---|---|');
  console.log(
    `| /v1/chat/completions | ${median(p50s.chat).toFixed(3)} ms | – | (chat body validation ${chatCost.toFixed(4)} ms) |`,
  );
  for (const door of ['messages', 'responses'] as const) {
    console.log(
      `| /v1/${door} | ${median(p50s[door]).toFixed(3)} ms | ${added(door) >= 0 ? '+' : ''}${added(door).toFixed(3)} ms | ${(inProcess[door] - chatCost).toFixed(4)} ms over chat's (${inProcess[door].toFixed(4)} ms in all) |`,
    );
  }
} finally {
  await stack.stop();
}
