import type { z } from 'zod';

/**
 * The console's only way to the gateway: same-origin fetches to the admin API, authenticated by the
 * admin session cookie (HttpOnly: this script never sees it, and the admin token is never kept here).
 * A 401 means the session is missing or expired: the browser goes to the sign-in page, which comes
 * back here afterwards. Answers are parsed with the contracts' schemas.
 */
export const LOGIN_URL = '/admin/login?next=/admin/console/';

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function errorMessage(body: unknown, res: Response): string {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const e: unknown = body.error;
    if (typeof e === 'object' && e !== null && 'message' in e && typeof e.message === 'string')
      return e.message;
  }
  return `${res.status} ${res.statusText}`;
}

async function request<S extends z.ZodType>(
  schema: S,
  method: string,
  path: string,
  body?: unknown,
): Promise<z.infer<S>> {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    window.location.assign(LOGIN_URL);
    throw new ApiError(401, 'Signed out: sign in again.');
  }
  // Every admin route answers 404 when the gateway has no admin token: say so instead.
  if (res.status === 404 && method === 'GET') {
    throw new ApiError(404, 'The admin API is off: set FAREGATE_ADMIN_TOKEN on the ingress and restart it.');
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(res.status, `${res.status} ${res.statusText}: not JSON`);
  }
  if (!res.ok) throw new ApiError(res.status, errorMessage(json, res));
  return schema.parse(json);
}

export const api = {
  get: <S extends z.ZodType>(schema: S, path: string) => request(schema, 'GET', path),
  post: <S extends z.ZodType>(schema: S, path: string, body: unknown = {}) =>
    request(schema, 'POST', path, body),
  patch: <S extends z.ZodType>(schema: S, path: string, body: unknown) =>
    request(schema, 'PATCH', path, body),
};

export async function signOut(): Promise<void> {
  await fetch('/admin/logout', { method: 'POST', credentials: 'same-origin' });
  window.location.assign(LOGIN_URL);
}

export const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
