/**
 * The browser's calls to the UCS server: JSON in, JSON out, errors as {@link ApiError} carrying the
 * server's message for the household.
 * @module
 */

/**
 * A refused request: `code` is the server's machine code (`wrong-password`, `session-expired`, …).
 * @example
 * ```ts
 * if (e instanceof ApiError && e.code === 'session-expired') lock(e.message);
 * ```
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * Calls the server.
 * @example
 * ```ts
 * const { kdf } = await api<{ kdf: KdfParams }>('GET', `/api/kdf?household=${hh}`);
 * ```
 */
export async function api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new ApiError(0, 'offline', 'The server cannot be reached. Check your connection and try again.');
  }
  let json: { error?: string; message?: string } & Record<string, unknown>;
  try {
    json = (await res.json()) as typeof json;
  } catch {
    throw new ApiError(res.status, 'bad-reply', `The server replied with status ${res.status} and no explanation.`);
  }
  if (!res.ok) throw new ApiError(res.status, json.error ?? 'error', json.message ?? `Request failed (status ${res.status}).`);
  return json as T;
}
