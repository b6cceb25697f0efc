/**
 * MQTT 3.1.1 wire pieces written out from the spec, for tests that send raw packets.
 */

/** The remaining-length encoding of §2.2.3. */
export function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    out.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return out;
}
