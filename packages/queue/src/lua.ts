import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Our Redis Lua scripts live in `.lua` files next to the module that runs them (read, highlighted
 * and diffed as Lua). `luaScript` reads one once, when its module loads, so a missing file
 * stops the process at start rather than on the first request, and returns a typed function:
 *
 *   const claim = luaScript<{ keys: [frames: string, meta: string]; args: [owner: string]; result: number }>(
 *     new URL('./frame-store.claim.lua', import.meta.url), { numberOfKeys: 2 });
 *   const seq = await claim(redis, [framesKey, metaKey], ['owner-1']);
 *
 * The first call on a client defines the script there (`defineCommand`: EVALSHA, falling back to
 * EVAL once after a restart or a SCRIPT FLUSH). `numberOfKeys` must match the length of the `keys`
 * tuple (checked by the type checker for fixed tuples, at run time for every call).
 *
 * Cluster-safe keys (DESIGN.md): every key a script touches is passed in `keys`, never built
 * inside Lua, and the keys of one call share a hash tag. An exception is written down at the script.
 */

/** A value Redis accepts as an argument. */
export type LuaArg = string | number | Buffer;

/** What a script takes and answers: `keys` (→ KEYS), `args` (→ ARGV), and its reply as ioredis decodes it. */
export interface LuaSpec {
  keys: readonly string[];
  args: readonly LuaArg[];
  result: unknown;
}

/** Anything ioredis-like that scripts can be defined on (a `Redis`, or a `Cluster`). */
export interface LuaHost {
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void;
}

export interface LuaScript<S extends LuaSpec> {
  (redis: LuaHost, keys: S['keys'], args: S['args']): Promise<S['result']>;
  /** The command name the script is defined under on a client (file name + a hash of the source). */
  readonly command: string;
  readonly numberOfKeys: number;
  /** The full source sent to Redis (preludes included). */
  readonly lua: string;
}

/**
 * A Lua prelude that sets `now`: Redis's clock in ms (`TIME`), one clock for every process.
 * Scripts that need it list it in `prelude`; it is the first lines of their source, so a line number
 * in a Redis error message counts them (two lines).
 */
export const REDIS_NOW_MS: URL = new URL('./redis-now.lua', import.meta.url);

/**
 * Loads `file` (a `new URL('./x.lua', import.meta.url)`), with the `prelude` files in front of it
 * (each ends its own lines), as a typed script function.
 */
export function luaScript<S extends LuaSpec>(
  file: URL,
  opts: { numberOfKeys: S['keys']['length']; prelude?: readonly URL[] },
): LuaScript<S> {
  const lua = [...(opts.prelude ?? []), file].map((f) => readFileSync(f, 'utf8')).join('');
  const path = fileURLToPath(file);
  const sha = createHash('sha1').update(lua).digest('hex');
  // Unique per source: two scripts with one file name (or a changed file in a long-lived client)
  // never share a command.
  const command = `lua:${basename(path, extname(path))}:${sha.slice(0, 12)}`;
  const { numberOfKeys } = opts;
  const defined = new WeakSet<LuaHost>();

  const run = (redis: LuaHost, keys: S['keys'], args: S['args']): Promise<S['result']> => {
    if (keys.length !== numberOfKeys) {
      return Promise.reject(
        new Error(`${command}: expected ${numberOfKeys} keys, got ${keys.length} (${path})`),
      );
    }
    if (!defined.has(redis)) {
      redis.defineCommand(command, { lua, numberOfKeys });
      defined.add(redis);
    }
    // defineCommand added the method at run time, so the client's type does not know it.
    const fn: unknown = Reflect.get(redis, command);
    if (typeof fn !== 'function')
      return Promise.reject(new Error(`${command} is not defined on this client`));
    return fn.call(redis, ...keys, ...args) as Promise<S['result']>;
  };
  return Object.assign(run, { command, numberOfKeys, lua });
}
