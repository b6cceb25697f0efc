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
});
