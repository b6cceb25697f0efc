/**
 * Signed and fixed-point plaintexts (export, net metering, prices).
 *
 * Encoding: an integer v with |v| <= (n - 1)/2 is the residue v mod n (a negative v is n - |v|); residues up
 * to (n - 1)/2 decode as themselves, residues above as v - n. Homomorphic sums stay exact as long as the true
 * sum stays in that range; a sum of `terms` values each |v| <= B cannot leave it when terms * B <= (n - 1)/2
 * ({@link maxSignedTerms}). Overflow detection: decode with the bound the sum can legitimately reach
 * ({@link decodeSigned}'s `maxAbs`): any residue beyond it (a wrapped sum, a wrong key, tampering) throws.
 *
 * Fixed point: a decimal value is the integer value * 10^decimals, chosen per quantity (energy is already
 * integer Wh; a price in 1e-4 minor units has decimals = 4). Parsed from and formatted to decimal strings
 * exactly: no binary floating point anywhere.
 * @module
 */

/**
 * Residue of a signed integer: v mod n for |v| <= (n-1)/2, else RangeError.
 * @example
 * ```ts
 * encodeSigned(-5n, n); // n - 5n
 * ```
 */
export function encodeSigned(v: bigint, n: bigint): bigint {
  if (typeof v !== 'bigint') throw new TypeError('signed plaintext must be a bigint');
  const half = (n - 1n) / 2n;
  if (v > half || -v > half) throw new RangeError('signed plaintext out of range (-n/2, n/2)');
  return v < 0n ? n + v : v;
}

/**
 * Maps a decrypted residue in [0, n) to a signed integer: values above (n-1)/2 are negative. With `maxAbs`,
 * a result whose magnitude exceeds it throws a RangeError (overflow detection).
 * @example
 * ```ts
 * decodeSigned(n - 5n, n); // -5n
 * decodeSigned(key.decrypt(sum), key.n, 1000n * 50_000n); // throws if |sum| > 5e7 Wh
 * ```
 */
export function decodeSigned(m: bigint, n: bigint, maxAbs?: bigint): bigint {
  if (typeof m !== 'bigint' || m < 0n || m >= n) throw new RangeError('residue must be in [0, n)');
  const v = m > (n - 1n) / 2n ? m - n : m;
  if (maxAbs !== undefined && (v > maxAbs || -v > maxAbs)) {
    throw new RangeError(`signed plaintext overflow: |value| exceeds the bound ${maxAbs}`);
  }
  return v;
}

/**
 * How many signed terms of magnitude <= maxAbs can be summed without leaving (-n/2, n/2).
 * @example
 * ```ts
 * maxSignedTerms(key.n, 1n << 40n); // about 2^2007 at 2048 bits
 * ```
 */
export function maxSignedTerms(n: bigint, maxAbs: bigint): bigint {
  if (maxAbs <= 0n) throw new RangeError('maxAbs must be positive');
  return (n - 1n) / 2n / maxAbs;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * Parses a decimal string into a fixed-point integer with `decimals` fraction digits; refuses more digits
 * than that (no silent rounding).
 * @example
 * ```ts
 * parseFixed('-0.2345', 4); // -2345n
 * ```
 */
export function parseFixed(text: string, decimals: number): bigint {
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 36) throw new RangeError('decimals must be 0..36');
  const m = DECIMAL.exec(text);
  if (!m) throw new TypeError(`not a decimal number: ${JSON.stringify(text)}`);
  const frac = m[3] ?? '';
  if (frac.length > decimals) throw new RangeError(`${text} has more than ${decimals} decimals`);
  const v = BigInt(m[2]! + frac.padEnd(decimals, '0'));
  return m[1] ? -v : v;
}

/**
 * Formats a fixed-point integer as a decimal string.
 * @example
 * ```ts
 * formatFixed(-2345n, 4); // '-0.2345'
 * ```
 */
export function formatFixed(v: bigint, decimals: number): string {
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 36) throw new RangeError('decimals must be 0..36');
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(decimals + 1, '0');
  const int = digits.slice(0, digits.length - decimals);
  const frac = decimals ? '.' + digits.slice(digits.length - decimals) : '';
  return (neg ? '-' : '') + int + frac;
}
