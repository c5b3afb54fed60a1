import { describe, expect, it } from 'vitest';
import { parseOptions, parseWorkerCounts } from './options.ts';

describe('parseWorkerCounts', () => {
  it('reads pool=count pairs, spaces and empty parts allowed', () => {
    expect(parseWorkerCounts('openai=3, anthropic=2,,llama=0')).toEqual(
      new Map([
        ['openai', 3],
        ['anthropic', 2],
        ['llama', 0],
      ]),
    );
  });

  it.each(['openai', 'openai=', 'openai=-1', 'openai=x', 'Open AI=2', 'openai=1000'])(
    'refuses %j',
    (spec) => {
      expect(() => parseWorkerCounts(spec)).toThrow(/--workers/);
    },
  );
});

describe('parseOptions', () => {
  it('has defaults', () => {
    expect(parseOptions([])).toEqual({ workers: new Map(), envFile: undefined, json: false, help: false });
  });

  it('takes the `--` pnpm hands on, repeated --workers (later wins), --env-file and --json', () => {
    const o = parseOptions([
      '--',
      '--workers',
      'openai=3,gemini=2',
      '--workers=openai=1',
      '--env-file',
      'x.env',
      '--json',
    ]);
    expect(o.workers).toEqual(
      new Map([
        ['openai', 1],
        ['gemini', 2],
      ]),
    );
    expect(o.envFile).toBe('x.env');
    expect(o.json).toBe(true);
  });

  it('refuses unknown options and positionals', () => {
    expect(() => parseOptions(['--worker', 'openai=1'])).toThrow();
    expect(() => parseOptions(['openai=1'])).toThrow();
  });
});
