import { describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { parseStreamBody, streamBody } from '../../protocol/stream.js';

const batch = { prevWh: 100, readings: [{ time: 1_700_000_000, period: 60, importWh: 102, powerW: 120, status: 0 }, { time: 1_700_000_060, period: 60, importWh: 105, powerW: 180, status: 0 }] };

describe('household stream body', () => {
  it('what the PES builds, the household parses back to the same batch', () => {
    const wire = cborDecode(cborEncode(streamBody('0123456789abcdef', batch)));
    expect(parseStreamBody(wire)).toEqual({ meter: '0123456789abcdef', ...batch });
  });

  it('refuses a bad meter id, a non-map, no readings, and a register that goes backwards', () => {
    expect(() => streamBody('XYZ', batch)).toThrow(/meter/);
    expect(() => parseStreamBody([1, 2])).toThrow(/map/);
    expect(() => parseStreamBody({ meter: '0123456789ABCDEF', prevWh: 0, readings: [[0, 60, 1, 1, 0]] })).toThrow(/meter/);
    expect(() => parseStreamBody({ meter: '0123456789abcdef', prevWh: 0, readings: [] })).toThrow(/readings/);
    expect(() => parseStreamBody({ meter: '0123456789abcdef', prevWh: 10, readings: [[0, 60, 9, 1, 0]] })).toThrow(/decreases/);
  });

  it('carries the export register in the long form, and only when it is not 0', () => {
    const prosumer = { prevWh: 100, prevExportWh: 40, readings: batch.readings.map((r, i) => ({ ...r, exportWh: 40 + 5 * i })) };
    const body = streamBody('0123456789abcdef', prosumer);
    expect(body.prevExportWh).toBe(40);
    expect(body.readings[1]).toHaveLength(6);
    expect(parseStreamBody(cborDecode(cborEncode(body)))).toEqual({ meter: '0123456789abcdef', ...prosumer });
    const zeros = streamBody('0123456789abcdef', { ...batch, prevExportWh: 0, readings: batch.readings.map((r) => ({ ...r, exportWh: 0 })) });
    expect(zeros).toEqual(streamBody('0123456789abcdef', batch));
    expect('prevExportWh' in zeros).toBe(false);
    const back = { meter: '0123456789abcdef', prevWh: 100, prevExportWh: 40, readings: [[1_700_000_000, 60, 102, 1, 0, 39]] };
    expect(() => parseStreamBody(back)).toThrow(/exportWh decreases/);
    expect(() => parseStreamBody({ ...back, readings: [[1_700_000_000, 60, 102, 1, 0]] })).toThrow(/6\.\.6/);
  });
});
