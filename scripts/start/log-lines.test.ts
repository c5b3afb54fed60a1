import { describe, expect, it } from 'vitest';
import { renderLine } from './log-lines.ts';

describe('renderLine', () => {
  it('renders a pino record as time, level, message and the remaining fields', () => {
    const line = JSON.stringify({
      level: 40,
      time: Date.UTC(2025, 0, 1, 12, 0, 1, 123),
      pid: 7,
      hostname: 'h',
      svc: 'ingress',
      msg: 'slow',
      ms: 12,
    });
    expect(renderLine(line)).toEqual({ lines: ['12:00:01.123 WARN  slow {"ms":12}'], level: 40 });
  });

  it('puts an error stack on the lines after the message', () => {
    const line = JSON.stringify({
      level: 50,
      msg: 'boom',
      err: { type: 'Error', message: 'x', stack: 'Error: x\n    at f' },
    });
    expect(renderLine(line).lines).toEqual([
      'ERROR boom {"err":{"type":"Error","message":"x"}}',
      'Error: x',
      '    at f',
    ]);
  });

  it.each(['plain text', '{not json', '{"no":"level"}', '[1,2]'])('passes %j through unchanged', (line) => {
    expect(renderLine(line)).toEqual({ lines: [line] });
  });
});
