/**
 * Words for messages to people.
 * @module
 */

/**
 * `n` and the noun in the number that fits: `1 neighbourhood`, `3 neighbourhoods`.
 * @example
 * ```ts
 * count(1, 'neighbourhood'); // '1 neighbourhood'
 * count(2, 'entry', 'entries'); // '2 entries'
 * ```
 */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
