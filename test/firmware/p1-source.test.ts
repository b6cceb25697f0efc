import { createCipheriv } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import type { Sample } from '../../firmware/hal/source.js';
import { openSource } from '../../firmware/sources/open.js';
import { DlmsFrameParser, openP1Frame, sealP1Frame, type DlmsFrame } from '../../firmware/sources/p1/dlms.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import { loadP1KeyFile, parseP1Keys } from '../../firmware/sources/p1/keys.js';
import { P1Source } from '../../firmware/sources/p1/source.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-p1-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pairs: CrossedPair[] = [];
afterEach(async () => {
  for (const p of pairs.splice(0)) for (const port of p) if (port.isOpen) await new Promise((r) => port.close(r));
  MockBinding.reset();
});

const T0 = Date.UTC(2024, 4, 2, 10) / 1000;
let files = 0;
function capture(...parts: Buffer[]): string {
  const file = join(dir, `capture-${files++}.p1`);
  writeFileSync(file, Buffer.concat(parts));
  return file;
}
async function all(source: { samples(from?: number): AsyncIterable<Sample> }, from?: number): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of source.samples(from)) out.push(s);
  return out;
}
const dsmr5 = (dt: number, wh: number, powerW = 500, exportWh = 0) => buildTelegram({ dialect: 'dsmr5', time: T0 + dt, importWh: [wh, 1000], exportWh: [exportWh, 250], powerW });

describe('P1Source over a capture file', () => {
  it('turns each telegram into a sample carrying the meter register, ending at the telegram clock', async () => {
    const source = new P1Source(capture(dsmr5(0, 5000, 500, 40), dsmr5(1, 5001, 3600, 40), dsmr5(2, 5003, 0, 47)), { tz: 'Europe/Amsterdam' });
    expect(await all(source)).toEqual([
      { time: T0 - 1, period: 1, powerMilliW: 500_000, importWh: 6000, exportWh: 290 }, // first: the dialect's interval (DSMR 5: 1 s)
      { time: T0, period: 1, powerMilliW: 3_600_000, importWh: 6001, exportWh: 290 }, // export: 2.8.1 + 2.8.2
      { time: T0 + 1, period: 1, powerMilliW: 0, importWh: 6003, exportWh: 297 },
    ]);
    expect(source.counters).toMatchObject({ telegrams: 3, parsed: 3, malformed: 0, crcErrors: 0 });
    expect(source.name).toMatch(/^p1:.*capture-\d+\.p1$/);
  });

  it('leaves the export register out of the sample when the telegram has no export line', async () => {
    const source = new P1Source(capture(buildTelegram({ dialect: 'dsmr4', time: T0, importWh: [10, 20], exportWh: [] })), { tz: 'Europe/Amsterdam' });
    const [s] = await all(source);
    expect(s).toEqual({ time: T0 - 10, period: 10, powerMilliW: 0, importWh: 30 });
    expect('exportWh' in s!).toBe(false);
  });

  it('survives garbage, a CRC failure, a meter restart mid-telegram and the cable pulled; energy only shifts', async () => {
    const corrupt = dsmr5(2, 5002);
    corrupt[corrupt.indexOf('1-0:1.7.0') + 12]! ^= 0x04;
    const file = capture(
      Buffer.from('\x00\xffnoise while the cable settles'),
      dsmr5(0, 5000),
      dsmr5(1, 5001),
      corrupt, // CRC fails: never parsed
      dsmr5(3, 5004).subarray(0, 90), // the meter restarts mid-telegram
      dsmr5(5, 5006),
      dsmr5(7205, 9000), // two hours without telegrams: the cable was pulled
      dsmr5(7206, 9001),
    );
    const source = new P1Source(file, { tz: 'Europe/Amsterdam', maxPeriod: 3600 });
    const samples = await all(source);
    expect(samples.map((s) => [s.time, s.period, s.importWh])).toEqual([
      [T0 - 1, 1, 6000],
      [T0, 1, 6001],
      [T0 + 1, 4, 6006], // the lost telegrams' energy is in the next register difference
      [T0 + 7205 - 3600, 3600, 10000], // a gap: capped period, the whole silence's energy
      [T0 + 7205, 1, 10001],
    ]);
    expect(source.counters).toMatchObject({ crcErrors: 1, truncated: 1, gaps: 1, parsed: 5 });
    expect(source.counters.garbageBytes).toBeGreaterThan(0);
    // Register differences equal the telegrams' differences, whatever was lost.
    expect(samples.at(-1)!.importWh! - samples[0]!.importWh!).toBe(9001 - 5000);
  });

  it('skips telegrams whose clock does not advance, and resumes after `from`', async () => {
    const file = capture(dsmr5(0, 10), dsmr5(1, 11), dsmr5(1, 11), dsmr5(0, 11), dsmr5(2, 12), dsmr5(3, 13));
    const source = new P1Source(file, { tz: 'Europe/Amsterdam' });
    expect((await all(source)).map((s) => s.importWh)).toEqual([1010, 1011, 1012, 1013]);
    expect(source.counters.outOfOrder).toBe(2);
    expect((await all(source, T0 + 1)).map((s) => [s.time, s.importWh])).toEqual([[T0 + 1, 1012], [T0 + 2, 1013]]);
  });

  it('stamps clockless DSMR 2.2 telegrams from `start` at the dialect interval', async () => {
    const t = (wh: number) => buildTelegram({ dialect: 'dsmr2.2', importWh: [wh, 0] });
    const source = new P1Source(capture(t(100), t(102), t(105)), { start: T0 });
    expect((await all(source)).map((s) => [s.time, s.period, s.importWh])).toEqual([[T0 - 10, 10, 100], [T0, 10, 102], [T0 + 10, 10, 105]]);
  });

  it('requires the CRC when told the dialect has one, and counts malformed telegrams', async () => {
    const old = buildTelegram({ dialect: 'dsmr3', importWh: [1, 2] });
    const noRegister = buildTelegram({ dialect: 'dsmr5', time: T0 + 1, importWh: [], exportWh: [4] });
    const strict = new P1Source(capture(old, dsmr5(0, 1), noRegister), { dialect: 'dsmr5' });
    expect(await all(strict)).toHaveLength(1);
    expect(strict.counters).toMatchObject({ missingCrc: 1, malformed: 1 });
  });

  it('refuses what it cannot open or understand', () => {
    expect(() => new P1Source(join(dir, 'missing.p1'))).toThrow(/cannot read P1 capture .*ENOENT/);
    expect(() => new P1Source(dir)).toThrow(/not a regular file/);
    expect(() => new P1Source('/dev/ttyUSB9', { dialect: 'dsmr9' as 'dsmr5' })).toThrow(/unknown P1 dialect/);
    expect(() => new P1Source('/dev/ttyUSB9', { tz: 'Mars/Olympus' })).toThrow(/time zone/);
    expect(() => openSource('p1:', { tz: 'UTC' })).toThrow(/p1:<serial device/);
    expect(new P1Source('/dev/ttyUSB9', { dialect: 'dsmr3' }).serial).toEqual({ baudRate: 9600, dataBits: 7, parity: 'even', stopBits: 1 });
    expect(new P1Source('/dev/ttyUSB9').serial).toEqual({ baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 });
    expect(new P1Source('/dev/ttyUSB9', { dialect: 'dsmr3', serial: { baudRate: 115200 } }).serial.baudRate).toBe(115200);
  });

  it('is what openSource builds from a p1: spec', async () => {
    const file = capture(dsmr5(0, 1));
    const source = openSource(`p1:${file}`, { tz: 'UTC' });
    expect(source).toBeInstanceOf(P1Source);
    expect(await all(source)).toHaveLength(1);
  });
});

describe('P1Source on a live line', () => {
  it('reads telegrams as they arrive, across silences, and releases the line when the loop ends', async () => {
    const pair = await openCrossedMockPair('/dev/p1-meter', '/dev/p1-reader');
    pairs.push(pair);
    const source = new P1Source('/dev/p1-reader', { line: streamLine(pair[1]), tz: 'UTC' });
    const got: Sample[] = [];
    const reading = (async () => {
      for await (const s of source.samples()) {
        got.push(s);
        if (got.length === 3) break;
      }
    })();
    pair[0].write(Buffer.concat([dsmr5(0, 100), dsmr5(1, 101).subarray(0, 50)]));
    await new Promise((r) => setTimeout(r, 100)); // a silence mid-telegram
    pair[0].write(dsmr5(1, 101).subarray(50));
    pair[0].write(dsmr5(2, 103));
    await reading;
    expect(got.map((s) => s.importWh)).toEqual([1100, 1101, 1103]);
    expect(pair[1].listenerCount('data')).toBe(0);
  });
});

describe('encrypted P1 (Luxembourg Smarty)', () => {
  const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
  const authKey = Buffer.from('d0d1d2d3d4d5d6d7d8d9dadbdcdddedf', 'hex');
  const st = Buffer.from('SAG10030', 'latin1');
  const telegram = (dt: number, wh: number) => buildTelegram({ dialect: 'smarty', time: T0 + dt, importWh: [wh, 0], powerW: 286 });

  /** The frame built here straight from the spec layout with node:crypto, independent of sealP1Frame. */
  function specFrame(plain: Buffer, ic: number): Buffer {
    const icBytes = Buffer.alloc(4);
    icBytes.writeUInt32BE(ic);
    const c = createCipheriv('aes-128-gcm', key, Buffer.concat([st, icBytes]), { authTagLength: 12 });
    c.setAAD(Buffer.concat([Buffer.of(0x30), authKey]));
    const ct = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(1 + 4 + ct.length);
    return Buffer.concat([Buffer.of(0xdb, 0x08), st, Buffer.of(0x82), len, Buffer.of(0x30), icBytes, ct]);
  }

  it('seals exactly the spec layout, and the frame parser and opener recover the telegram', () => {
    const plain = telegram(0, 5000);
    const wire = specFrame(plain, 0x10000001);
    expect(sealP1Frame(plain, { key, authKey }, st, 0x10000001).equals(wire)).toBe(true);
    expect(wire.subarray(0, 18).toString('hex')).toBe(`db08${st.toString('hex')}82${(wire.length - 13).toString(16).padStart(4, '0')}3010000001`);
    const frames: DlmsFrame[] = [];
    const parser = new DlmsFrameParser();
    parser.on('data', (f: DlmsFrame) => frames.push(f));
    // Garbage with a stray 0xDB, then two frames back to back, split at awkward places.
    const bytes = Buffer.concat([Buffer.of(0x00, 0xdb, 0x07, 0x55), wire, specFrame(telegram(10, 5001), 0x10000002)]);
    for (let i = 0; i < bytes.length; i += 5) parser.write(bytes.subarray(i, i + 5));
    parser.end();
    expect(frames.map((f) => f.ic)).toEqual([0x10000001, 0x10000002]);
    expect(parser.counters).toMatchObject({ frames: 2, badHeaders: 1, garbageBytes: 3 });
    expect(openP1Frame(frames[0]!, { key, authKey }).equals(plain)).toBe(true);
    expect(() => openP1Frame(frames[0]!, { key: authKey, authKey })).toThrow(/authentication/);
    expect(() => openP1Frame(frames[0]!, { key, authKey: key })).toThrow(/authentication/); // AAD covers the auth key
    expect(() => openP1Frame({ ...frames[0]!, sc: 0x20 }, { key, authKey })).toThrow(/security control/);
  });

  it('a capture of encrypted frames replays as samples; a wrong key is refused and counted, a replayed counter too', async () => {
    const file = capture(Buffer.from('junk'), specFrame(telegram(0, 5000), 7), specFrame(telegram(10, 5004), 8), specFrame(telegram(10, 5004), 8), specFrame(telegram(20, 5010), 9));
    const right = new P1Source(file, { tz: 'Europe/Luxembourg', keys: { key, authKey } });
    expect((await all(right)).map((s) => [s.time, s.period, s.importWh, s.powerMilliW])).toEqual([
      [T0 - 10, 10, 5000, 286_000],
      [T0, 10, 5004, 286_000],
      [T0 + 10, 10, 5010, 286_000],
    ]);
    expect(right.counters).toMatchObject({ frames: 4, decryptFailures: 0, replayedFrames: 1, telegrams: 3 });
    const wrong = new P1Source(file, { tz: 'Europe/Luxembourg', keys: { key: Buffer.alloc(16, 1), authKey } });
    expect(await all(wrong)).toEqual([]);
    expect(wrong.counters).toMatchObject({ frames: 4, decryptFailures: 4, telegrams: 0 });
  });

  it('loads keys from hex flags or a 0600 key file, and refuses a readable or malformed one', () => {
    const hex = { key: key.toString('hex'), authKey: authKey.toString('hex') };
    expect(Buffer.from(parseP1Keys(hex.key, hex.authKey).key).equals(key)).toBe(true);
    expect(() => parseP1Keys('abc', hex.authKey)).toThrow(/32 hex/);
    const file = join(dir, 'p1.key.json');
    writeFileSync(file, JSON.stringify(hex), { mode: 0o600 });
    expect(Buffer.from(loadP1KeyFile(file).authKey).equals(authKey)).toBe(true);
    chmodSync(file, 0o644);
    expect(() => loadP1KeyFile(file)).toThrow(/chmod 600/);
    writeFileSync(file, '{"key": "00"}', { mode: 0o600 });
    chmodSync(file, 0o600);
    let message = '';
    try {
      loadP1KeyFile(file);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/key must be 32 hex digits/);
    expect(message).not.toContain('00"');
  });
});
