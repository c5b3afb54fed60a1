import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { testRedis } from '@faregate/testing/env';
import { luaScript, REDIS_NOW_MS } from './lua.ts';
import { createRedis } from './redis.ts';

const { url, prefix } = testRedis();
let redis: Redis;
let other: Redis;
let dir: string;

/** Writes a script into a fresh file and returns its URL. */
const file = (name: string, lua: string): URL => {
  const path = join(dir, name);
  writeFileSync(path, lua);
  return pathToFileURL(path);
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-lua-'));
  redis = createRedis(url);
  other = createRedis(url);
});
afterAll(() => {
  redis.disconnect();
  other.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

describe('luaScript', () => {
  it('passes keys as KEYS and args as ARGV, on any client it is called with', async () => {
    const echo = luaScript<{ keys: [a: string, b: string]; args: [x: string, n: number]; result: string[] }>(
      file('echo.lua', 'return { KEYS[1], KEYS[2], ARGV[1], ARGV[2], tostring(#KEYS), tostring(#ARGV) }\n'),
      { numberOfKeys: 2 },
    );
    const keys: [string, string] = [`${prefix}:{t}:a`, `${prefix}:{t}:b`];
    expect(await echo(redis, keys, ['x', 7])).toEqual([...keys, 'x', '7', '2', '2']);
    expect(await echo(other, keys, ['y', 8])).toEqual([...keys, 'y', '8', '2', '2']);
    // Defined once per client: a second call reuses the definition.
    expect(await echo(redis, keys, ['z', 9])).toEqual([...keys, 'z', '9', '2', '2']);
  });

  it('prepends preludes: REDIS_NOW_MS gives the script Redis’s clock in ms', async () => {
    const now = luaScript<{ keys: []; args: []; result: number }>(file('now.lua', 'return now\n'), {
      numberOfKeys: 0,
      prelude: [REDIS_NOW_MS],
    });
    const [s, us] = await redis.time();
    const before = Number(s) * 1000 + Math.floor(Number(us) / 1000);
    const t = await now(redis, [], []);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t - before).toBeLessThan(60_000);
    expect(now.lua.startsWith("local t = redis.call('TIME')")).toBe(true);
  });

  it('refuses a call with the wrong number of keys before it reaches Redis', async () => {
    const one = luaScript<{ keys: string[]; args: []; result: number }>(file('one.lua', 'return 1\n'), {
      numberOfKeys: 1,
    });
    await expect(one(redis, [], [])).rejects.toThrow(/expected 1 keys, got 0/);
    await expect(one(redis, ['a', 'b'], [])).rejects.toThrow(/expected 1 keys, got 2/);
    expect(await one(redis, [`${prefix}:x`], [])).toBe(1);
  });

  it('gives two sources with one file name two commands, and surfaces script errors', async () => {
    const a = luaScript<{ keys: []; args: []; result: string }>(file('same.lua', "return 'a'\n"), {
      numberOfKeys: 0,
    });
    const b = luaScript<{ keys: []; args: []; result: string }>(file('same.lua', "return 'b'\n"), {
      numberOfKeys: 0,
    });
    expect(a.command).not.toBe(b.command);
    expect(await a(redis, [], [])).toBe('a');
    expect(await b(redis, [], [])).toBe('b');
    const failing = luaScript<{ keys: []; args: []; result: never }>(
      file('fail.lua', "return redis.error_reply('NOTOWNER')\n"),
      { numberOfKeys: 0 },
    );
    await expect(failing(redis, [], [])).rejects.toThrow('NOTOWNER');
  });
});
