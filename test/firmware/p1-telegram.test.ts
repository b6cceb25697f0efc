import { describe, expect, it } from 'vitest';
import { crc16arc, crcText } from '../../firmware/sources/p1/crc.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import { P1TelegramParser } from '../../firmware/sources/p1/parser.js';
import { energyWh, p1Time, P1ParseError, parseTelegram, powerMilliW } from '../../firmware/sources/p1/telegram.js';

const AMS = 'Europe/Amsterdam';

/** Feeds `chunks` to a fresh parser and returns what it emitted. */
function run(chunks: (string | Buffer)[], options?: ConstructorParameters<typeof P1TelegramParser>[0]) {
  const parser = new P1TelegramParser(options);
  const out: Buffer[] = [];
  const rejected: string[] = [];
  parser.on('data', (b: Buffer) => out.push(b));
  parser.on('rejected', (r: { reason: string }) => rejected.push(r.reason));
  for (const c of chunks) parser.write(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  parser.end();
  return { out, rejected, counters: parser.counters };
}

// Written by hand from the DSMR 5.0.2 P1 companion standard; its CRC was computed with an independent
// bitwise CRC-16/ARC (Python) and is a fixed fact here.
const HAND = '/XMX5LGBBFG1012345678\r\n\r\n1-3:0.2.8(50)\r\n0-0:1.0.0(240101120000W)\r\n1-0:1.8.1(001234.567*kWh)\r\n1-0:1.8.2(000765.432*kWh)\r\n1-0:1.7.0(00.480*kW)\r\n!';

describe('CRC-16/ARC', () => {
  it('has the catalogue check value and the value of a telegram written from the spec', () => {
    expect(crc16arc(Buffer.from('123456789'))).toBe(0xbb3d);
    expect(crcText(crc16arc(Buffer.from(HAND, 'latin1')))).toBe('5623');
    expect(crcText(0x0b9f)).toBe('0B9F');
  });
});

describe('values and clock', () => {
  it('reads energy and power exactly in the units the telegram gives', () => {
    expect(energyWh('001581.123*kWh')).toBe(1_581_123);
    expect(energyWh('00001.001*kWh')).toBe(1001);
    expect(energyWh('006545766*Wh')).toBe(6_545_766);
    expect(energyWh('00052185.7825309*kWh')).toBe(52_185_782); // finer than a Wh: cut, like a register display
    expect(energyWh('1.5*kW')).toBeUndefined();
    expect(energyWh('12*MWh')).toBeUndefined();
    expect(powerMilliW('00.244*kW')).toBe(244_000);
    expect(powerMilliW('0001.01*kW')).toBe(1_010_000);
    expect(powerMilliW('000000286*W')).toBe(286_000);
    expect(powerMilliW('002124.86*W')).toBe(2_124_860);
    expect(powerMilliW('1*kWh')).toBeUndefined();
  });

  it('reads S/W timestamps around the end of summer time in Europe/Amsterdam (the repeated hour)', () => {
    // 2023-10-29: 03:00 CEST -> 02:00 CET. 02:30 happens twice: S = 00:30 UTC, W = 01:30 UTC.
    expect(p1Time('231029023000S', AMS)).toBe(Date.UTC(2023, 9, 29, 0, 30) / 1000);
    expect(p1Time('231029023000W', AMS)).toBe(Date.UTC(2023, 9, 29, 1, 30) / 1000);
    expect(p1Time('231029015959S', AMS)).toBe(Date.UTC(2023, 9, 28, 23, 59, 59) / 1000);
    expect(p1Time('231029030000W', AMS)).toBe(Date.UTC(2023, 9, 29, 2, 0) / 1000);
    // Spring: 2024-03-31 02:00 CET -> 03:00 CEST; 02:30 does not exist.
    expect(p1Time('240331015959W', AMS)).toBe(Date.UTC(2024, 2, 31, 0, 59, 59) / 1000);
    expect(p1Time('240331030000S', AMS)).toBe(Date.UTC(2024, 2, 31, 1, 0) / 1000);
    expect(() => p1Time('240331023000S', AMS)).toThrow(P1ParseError);
    expect(() => p1Time('240230120000W', AMS)).toThrow(/not a date/);
    expect(() => p1Time('2402301200W', AMS)).toThrow(/YYMMDD/);
  });

  it('reads the telegram written by hand', () => {
    const t = parseTelegram(`${HAND}5623\r\n`, AMS);
    expect(t).toMatchObject({ dialect: 'dsmr5', version: '50', importWh: 1_999_999, importTariffWh: [1_234_567, 765_432], powerImportMilliW: 480_000, hasCrc: true });
    expect(t.time).toBe(Date.UTC(2024, 0, 1, 11) / 1000);
    expect(t.exportWh).toBeUndefined();
  });
});

describe('dialects', () => {
  const time = Date.UTC(2023, 9, 29, 0, 30) / 1000; // 02:30 CEST, the first of the two
  const spec = { time, importWh: [1_234_567, 89_012], exportWh: [5_000, 6_001], powerW: 480, exportPowerW: 1_250 };

  it.each([
    ['dsmr2.2', false, undefined],
    ['dsmr3', false, undefined],
    ['dsmr4', true, '42'],
    ['dsmr5', true, '50'],
    ['emucs', true, '50217'],
  ] as const)('%s: tariff registers summed, export kept, units kWh/kW, CRC as the dialect has it', (dialect, hasCrc, version) => {
    const t = parseTelegram(buildTelegram({ dialect, ...spec }), AMS);
    expect(t).toMatchObject({ dialect, hasCrc, version, importWh: 1_323_579, importTariffWh: [1_234_567, 89_012], exportWh: 11_001, exportTariffWh: [5_000, 6_001], powerImportMilliW: 480_000, powerExportMilliW: 1_250_000, equipmentId: 'E0000000000000001' });
    expect(t.importTotalWh).toBeUndefined();
    expect(t.time).toBe(hasCrc ? time : undefined); // DSMR 2.2/3 have no clock
  });

  it('Belgian e-MUCS: 1.8.1 is day and 1.8.2 night; the version line is 0-0:96.1.4', () => {
    const t = parseTelegram(buildTelegram({ dialect: 'emucs', time, importWh: [100_000, 2_000] }), 'Europe/Brussels');
    expect(t.dialect).toBe('emucs');
    expect(t.importTariffWh).toEqual([100_000, 2_000]);
    expect(t.header).toBe('FLU5\\253769484_A');
  });

  it('Luxembourg Smarty: the totals 1.8.0 / 2.8.0 in Wh are the registers, power in W', () => {
    const t = parseTelegram(buildTelegram({ dialect: 'smarty', ...spec, powerW: 286 }), 'Europe/Luxembourg');
    expect(t).toMatchObject({ dialect: 'smarty', importWh: 1_323_579, importTotalWh: 1_323_579, exportWh: 11_001, exportTotalWh: 11_001, exportTariffWh: [5_000, 6_001], powerImportMilliW: 286_000, powerExportMilliW: 1_250_000 });
    // The total wins over the tariffs when the meter has one.
    const text = buildTelegram({ dialect: 'smarty', ...spec }).toString('latin1').replace('1-0:1.8.0(001323579*Wh)', '1-0:1.8.0(001323600*Wh)');
    expect(parseTelegram(text, 'UTC').importWh).toBe(1_323_600);
  });

  it('the S/W letter picks the instant of the repeated hour in the telegram', () => {
    const first = parseTelegram(buildTelegram({ dialect: 'dsmr5', ...spec }), AMS);
    const second = parseTelegram(buildTelegram({ dialect: 'dsmr5', ...spec, time: time + 3600 }), AMS);
    expect(buildTelegram({ dialect: 'dsmr5', ...spec }).toString()).toContain('0-0:1.0.0(231029023000S)');
    expect(buildTelegram({ dialect: 'dsmr5', ...spec, time: time + 3600 }).toString()).toContain('0-0:1.0.0(231029023000W)');
    expect(second.time! - first.time!).toBe(3600);
  });

  it('tolerates unknown OBIS lines and lines gateways append, and counts them', () => {
    const t = parseTelegram(buildTelegram({ dialect: 'dsmr5', ...spec, extraLines: ['1-0:99.97.0(0)(0-0:96.7.19)', '9-9:9.9.9(whatever)', 'Gateway: p1-bridge v2', 'rssi=-61'] }), AMS);
    expect(t.importWh).toBe(1_323_579);
    expect(t.foreignLines).toBe(2);
    expect(t.ignoredLines).toBe(4); // 32.7.0 and 24.2.1 of the generator, and the two above
  });

  it('rejects a telegram whose register is malformed or missing (the guard of the CRC-less dialects)', () => {
    const good = buildTelegram({ dialect: 'dsmr3', importWh: [1000, 2000] }).toString('latin1');
    expect(() => parseTelegram(good.replace('00001.000*kWh', '0000X.000*kWh'), AMS)).toThrow(/1-0:1.8.1/);
    expect(() => parseTelegram(good.replace('1-0:1.8.1', '1-0:1.9.1').replace('1-0:1.8.2', '1-0:1.9.2'), AMS)).toThrow(/no import register/);
    expect(() => parseTelegram(good.replace('1-0:1.8.2(00002.000*kWh)', '1-0:1.8.1(00002.000*kWh)'), AMS)).toThrow(/twice/);
  });
});

describe('P1TelegramParser', () => {
  const a = buildTelegram({ dialect: 'dsmr5', time: 1_700_000_000, importWh: [10, 20] });
  const b = buildTelegram({ dialect: 'dsmr5', time: 1_700_000_001, importWh: [11, 20] });

  it('emits whole telegrams however the bytes are chunked', () => {
    const bytes = Buffer.concat([a, b]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    const { out, counters } = run(chunks);
    expect(out.map((x) => x.toString('latin1'))).toEqual([a.toString('latin1'), b.toString('latin1')]);
    expect(counters).toMatchObject({ telegrams: 2, crcErrors: 0, garbageBytes: 0 });
  });

  it('joins mid-telegram: bytes before the first "/" are garbage', () => {
    const { out, counters } = run([a.subarray(40), b]);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(b)).toBe(true);
    expect(counters.garbageBytes).toBe(a.length - 40);
  });

  it('resynchronises on "/" when a telegram is cut off (the meter restarted mid-telegram)', () => {
    const { out, counters, rejected } = run([a.subarray(0, 60), b]);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(b)).toBe(true);
    expect(counters.truncated).toBe(1);
    expect(rejected).toEqual(['truncated']);
  });

  it('rejects a telegram whose CRC fails, counts it and emits nothing of it', () => {
    const bad = Buffer.from(a);
    bad[bad.indexOf('1-0:1.8.1') + 14]! ^= 0x01; // one bit of the register
    const { out, counters, rejected } = run([bad, b]);
    expect(out.map((x) => x.toString())).toEqual([b.toString()]);
    expect(counters.crcErrors).toBe(1);
    expect(rejected).toEqual(['crc']);
    const garbled = Buffer.from(a.toString('latin1').replace(/!([0-9A-F]{4})\r\n$/, '!ZZ\r\n'), 'latin1');
    expect(run([garbled]).counters.crcErrors).toBe(1);
  });

  it('accepts CRC-less telegrams unless the dialect requires a CRC', () => {
    const old = buildTelegram({ dialect: 'dsmr2.2', importWh: [1, 2] });
    expect(run([old]).out).toHaveLength(1);
    const strict = run([old], { crc: 'required' });
    expect(strict.out).toHaveLength(0);
    expect(strict.counters.missingCrc).toBe(1);
  });

  it('bounds its buffer: a telegram that never ends is dropped and the next one is read', () => {
    const endless = Buffer.concat([Buffer.from('/XXX5\r\n\r\n'), Buffer.alloc(5000, 'A')]);
    const { out, counters } = run([endless, Buffer.alloc(3000, 0x42), b], { maxTelegramBytes: 4096 });
    expect(counters.oversize).toBe(1);
    expect(counters.garbageBytes).toBe(3000); // after the drop, bytes up to the next "/" are garbage
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(b)).toBe(true);
  });

  it('ends cleanly, counting an unfinished telegram, and checks its options', () => {
    const { out, counters } = run([a, b.subarray(0, 30)]);
    expect(out).toHaveLength(1);
    expect(counters.truncated).toBe(1);
    expect(() => new P1TelegramParser({ maxTelegramBytes: 10 })).toThrow(RangeError);
    expect(() => new P1TelegramParser({ crc: 'sometimes' as 'auto' })).toThrow(TypeError);
  });
});
