import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LocalTimeResolver, parseKwToMilliW, UmassSource } from '../../firmware/sources/umass.js';
import type { Sample } from '../../firmware/hal/source.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-umass-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function csv(text: string): string {
  const file = join(dir, `f${n++}.csv`);
  writeFileSync(file, text);
  return file;
}
async function all(src: UmassSource, from?: number): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of src.samples(from)) out.push(s);
  return out;
}
const utc = (iso: string) => Date.parse(iso) / 1000;

describe('parseKwToMilliW', () => {
  it('parses kW text exactly into mW, rounding half up on the first dropped digit', () => {
    expect(parseKwToMilliW('0')).toBe(0);
    expect(parseKwToMilliW('1')).toBe(1_000_000);
    expect(parseKwToMilliW('0.005216666666666667')).toBe(5217);
    expect(parseKwToMilliW('0.0000004')).toBe(0);
    expect(parseKwToMilliW('0.0000005')).toBe(1);
    expect(parseKwToMilliW('0.0000015')).toBe(2);
    expect(parseKwToMilliW('2.3456785')).toBe(2_345_679);
    expect(parseKwToMilliW('.5')).toBe(500_000);
    expect(parseKwToMilliW('5.')).toBe(5_000_000);
    expect(parseKwToMilliW('1.5e-3')).toBe(1500);
    expect(parseKwToMilliW('1.5E2')).toBe(150_000_000);
    expect(parseKwToMilliW(' 0.1 ')).toBe(100_000);
    for (const bad of ['', '.', '-0.1', 'abc', '1,5', '0x10', '1e', 'NaN', '1e99', '9'.repeat(70)]) {
      expect(parseKwToMilliW(bad), bad).toBeUndefined();
    }
  });

  it('agrees with exact rational rounding on random decimals', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 14n }), fc.integer({ min: 0, max: 12 }), (digits, scale) => {
        const s = digits.toString().padStart(scale + 1, '0');
        const text = scale === 0 ? s : `${s.slice(0, -scale)}.${s.slice(-scale)}`;
        // value = digits / 10^scale kW; mW = round_half_up(digits * 10^6 / 10^scale)
        const num = digits * 10n ** 6n;
        const den = 10n ** BigInt(scale);
        const expected = num / den + ((num % den) * 2n >= den ? 1n : 0n);
        expect(parseKwToMilliW(text)).toBe(expected <= 10n ** 12n ? Number(expected) : undefined);
      }),
    );
  });
});

describe('UmassSource', () => {
  it('reads samples: period to the next sample, the last keeps the previous period', async () => {
    const file = csv('2016-05-01 00:00:00,0.5\n2016-05-01 00:01:00,1.25\n2016-05-01 00:03:00,0.000001\n');
    const src = new UmassSource(file);
    expect(await all(src)).toEqual([
      { time: utc('2016-05-01T00:00:00Z'), period: 60, powerMilliW: 500_000 },
      { time: utc('2016-05-01T00:01:00Z'), period: 120, powerMilliW: 1_250_000 },
      { time: utc('2016-05-01T00:03:00Z'), period: 120, powerMilliW: 1 },
    ]);
    expect(src.stats).toMatchObject({ lines: 3, samples: 3, malformed: 0, gaps: 0 });
  });

  it('resumes at a time, yielding exactly the tail of a full pass', async () => {
    const lines = Array.from({ length: 50 }, (_, i) => `2016-05-01 00:${String(i).padStart(2, '0')}:00,0.${i}\n`).join('');
    const src = new UmassSource(csv(lines));
    const full = await all(src);
    const from = full[20]!.time;
    expect(await all(src, from)).toEqual(full.slice(20));
    expect(await all(src, from - 30)).toEqual(full.slice(20));
  });

  it('converts local time in America/New_York across both DST changes of 2016', async () => {
    // Spring forward on 2016-03-13: 01:59 EST is followed by 03:00 EDT (02:xx does not exist).
    const spring = new UmassSource(csv('2016-03-13 01:58:00,1\n2016-03-13 01:59:00,1\n2016-03-13 03:00:00,1\n2016-03-13 03:01:00,1\n'), { tz: 'America/New_York' });
    const s = await all(spring);
    expect(s.map((x) => x.time)).toEqual([utc('2016-03-13T06:58:00Z'), utc('2016-03-13T06:59:00Z'), utc('2016-03-13T07:00:00Z'), utc('2016-03-13T07:01:00Z')]);
    expect(s.map((x) => x.period)).toEqual([60, 60, 60, 60]);
    // Fall back on 2016-11-06: 01:00-01:59 happens twice (EDT, then EST).
    const fall = new UmassSource(csv('2016-11-06 00:59:00,1\n2016-11-06 01:00:00,1\n2016-11-06 01:59:00,1\n2016-11-06 01:00:00,2\n2016-11-06 01:59:00,2\n2016-11-06 02:00:00,2\n'), { tz: 'America/New_York' });
    const f = await all(fall);
    expect(f.map((x) => x.time)).toEqual([
      utc('2016-11-06T04:59:00Z'),
      utc('2016-11-06T05:00:00Z'), // 01:00 EDT
      utc('2016-11-06T05:59:00Z'),
      utc('2016-11-06T06:00:00Z'), // 01:00 EST
      utc('2016-11-06T06:59:00Z'),
      utc('2016-11-06T07:00:00Z'), // 02:00 EST
    ]);
    expect(f.map((x) => x.period)).toEqual([60, 3540, 60, 3540, 60, 60]);
  });

  it('converts Europe/London and shifts a non-existent local time forward as luxon does', async () => {
    // 2016-03-27 01:30 does not exist in London (01:00 GMT -> 02:00 BST): read as 02:30 BST = 01:30Z.
    const src = new UmassSource(csv('2016-03-27 00:59:00,1\n2016-03-27 01:30:00,1\n2016-03-27 02:45:00,1\n'), { tz: 'Europe/London' });
    expect((await all(src)).map((x) => x.time)).toEqual([utc('2016-03-27T00:59:00Z'), utc('2016-03-27T01:30:00Z'), utc('2016-03-27T01:45:00Z')]);
    // Summer time: +01:00.
    const summer = new UmassSource(csv('2016-07-01 12:00:00,1\n'), { tz: 'Europe/London' });
    expect((await all(summer))[0]!.time).toBe(utc('2016-07-01T11:00:00Z'));
  });

  it('resolves ambiguous times to the earliest instant after the previous sample', () => {
    const r = new LocalTimeResolver('America/New_York');
    const wall = LocalTimeResolver.wallSeconds(2016, 11, 6, 1, 30, 0)!;
    expect(r.resolve(wall)).toBe(utc('2016-11-06T05:30:00Z'));
    expect(r.resolve(wall, utc('2016-11-06T05:59:00Z'))).toBe(utc('2016-11-06T06:30:00Z'));
    expect(LocalTimeResolver.wallSeconds(2016, 2, 30, 0, 0, 0)).toBeUndefined();
    expect(() => new LocalTimeResolver('Not/AZone')).toThrow(/unknown time zone/);
  });

  it('skips and counts malformed lines by default, or fails naming file and line', async () => {
    const text = '2016-05-01 00:00:00,0.5\ngarbage\n2016-05-01 00:01:00,-1\n\n2016-02-30 00:00:00,1\n2016-05-01 00:02:00,0.25\n';
    const file = csv(text);
    const src = new UmassSource(file);
    const got = await all(src);
    expect(got.map((s) => s.powerMilliW)).toEqual([500_000, 250_000]);
    expect(got[0]!.period).toBe(120);
    expect(src.stats).toMatchObject({ lines: 6, samples: 2, malformed: 3, firstMalformedLine: 2 });
    await expect(all(new UmassSource(file, { malformed: 'fail' }))).rejects.toThrow(`${file}:2: malformed line`);
  });

  it('fails on a timestamp that does not increase, naming file and line', async () => {
    const file = csv('2016-05-01 00:00:00,0.5\n2016-05-01 00:01:00,0.5\n2016-05-01 00:01:00,0.5\n');
    await expect(all(new UmassSource(file))).rejects.toThrow(`${file}:3: timestamp does not increase (previous sample at line 2)`);
    const back = csv('2016-05-01 00:05:00,0.5\n2016-05-01 00:01:00,0.5\n');
    await expect(all(new UmassSource(back))).rejects.toThrow(`${back}:2: timestamp does not increase`);
  });

  it('treats a gap longer than maxPeriod as missing data', async () => {
    const src = new UmassSource(csv('2016-05-01 00:00:00,1\n2016-05-01 00:01:00,1\n2016-05-01 05:00:00,1\n2016-05-01 05:01:00,1\n'));
    const got = await all(src);
    expect(got.map((s) => s.period)).toEqual([60, 60, 60, 60]);
    expect(src.stats.gaps).toBe(1);
  });

  it('names the file when it is missing or not a file, and rejects a bad zone', () => {
    const missing = join(dir, 'nope.csv');
    expect(() => new UmassSource(missing)).toThrow(`cannot read UMass CSV ${missing}: ENOENT`);
    expect(() => new UmassSource(dir)).toThrow(`cannot read UMass CSV ${dir}: not a regular file`);
    expect(() => new UmassSource(csv('x'), { tz: 'Nowhere/Town' })).toThrow(/unknown time zone/);
  });

  it('yields a single-sample file with the fallback period and an empty file with nothing', async () => {
    expect(await all(new UmassSource(csv('2016-05-01 00:00:00,1\n')))).toEqual([{ time: utc('2016-05-01T00:00:00Z'), period: 60, powerMilliW: 1_000_000 }]);
    expect(await all(new UmassSource(csv('')))).toEqual([]);
  });
});
