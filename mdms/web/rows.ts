/**
 * Checked conversions of database values (both back ends return safe-integer numbers and strings; anything
 * else is a bug or a tampered database, and fails loudly rather than flowing on).
 * @module
 */

/**
 * A safe integer column.
 * @example
 * ```ts
 * int(row.id, 'id');
 * ```
 */
export function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`database returned a non-integer ${what}`);
  return v;
}

/**
 * A text column.
 * @example
 * ```ts
 * text(row.username, 'username');
 * ```
 */
export function text(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`database returned a non-text ${what}`);
  return v;
}

/**
 * A nullable text column.
 * @example
 * ```ts
 * textOrNull(row.tariff_code, 'tariff code');
 * ```
 */
export function textOrNull(v: unknown, what: string): string | null {
  return v === null || v === undefined ? null : text(v, what);
}

/**
 * A nullable integer column.
 * @example
 * ```ts
 * intOrNull(row.user_id, 'user id');
 * ```
 */
export function intOrNull(v: unknown, what: string): number | null {
  return v === null || v === undefined ? null : int(v, what);
}
