import { afterEach, describe, expect, it, vi } from 'vitest';
import { MockBinding, type MockPortBinding } from '../../firmware/hal/crossed-mock.js';
import { ReconnectingSerialLine, SerialOpenError } from '../../firmware/serial.js';

const lines: ReconnectingSerialLine[] = [];
afterEach(async () => {
  for (const l of lines.splice(0)) await l.close();
  MockBinding.reset();
});

function open(path: string): ReconnectingSerialLine {
  const line = new ReconnectingSerialLine({ path, binding: MockBinding, minBackoffMs: 5, maxBackoffMs: 20 });
  lines.push(line);
  return line;
}
const binding = (line: ReconnectingSerialLine) => line.port!.port as unknown as MockPortBinding;

describe('ReconnectingSerialLine', () => {
  it('keeps retrying until the device appears, then carries bytes both ways', async () => {
    const line = open('/dev/ttyLATE');
    await vi.waitFor(() => expect(line.counters.openFailures).toBeGreaterThanOrEqual(2));
    expect(await line.write(Buffer.from('lost')).then(() => line.counters.droppedBytes)).toBe(4);
    MockBinding.createPort('/dev/ttyLATE', { echo: false, record: false });
    await line.opened();
    expect(line.port!.baudRate).toBe(115200);
    await line.write(Buffer.from('hello'));
    expect(binding(line).lastWrite?.toString()).toBe('hello');
    const got: string[] = [];
    line.onData((b) => got.push(b.toString()));
    binding(line).emitData(Buffer.from('ack'));
    await vi.waitFor(() => expect(got).toEqual(['ack']));
  });

  it('reopens the port after it disappears, dropping and counting writes meanwhile', async () => {
    MockBinding.createPort('/dev/ttyGONE', { echo: false, record: false });
    const line = open('/dev/ttyGONE');
    await line.opened();
    const got: string[] = [];
    line.onData((b) => got.push(b.toString()));
    await new Promise<void>((resolve) => line.port!.close(() => resolve())); // the adapter goes away
    expect(line.isOpen).toBe(false);
    await line.write(Buffer.from('xx'));
    expect(line.counters.droppedBytes).toBe(2);
    await vi.waitFor(() => expect(line.counters.opens).toBe(2));
    expect(line.counters.disconnects).toBe(1);
    binding(line).emitData(Buffer.from('again'));
    await vi.waitFor(() => expect(got).toEqual(['again']));
  });

  it('drain() waits for the port to drain (tcdrain: the meter starts a frame timer then), or resolves at once while down', async () => {
    MockBinding.createPort('/dev/ttyDRAIN', { echo: false, record: false });
    const line = open('/dev/ttyDRAIN');
    await line.opened();
    const drain = vi.spyOn(binding(line), 'drain');
    await line.write(Buffer.from('frame'));
    await line.drain();
    expect(drain).toHaveBeenCalledTimes(1);
    await new Promise<void>((resolve) => line.port!.close(() => resolve()));
    await line.drain();
    expect(drain).toHaveBeenCalledTimes(1);
  });

  it('stops reconnecting once closed, and validates its options', async () => {
    MockBinding.createPort('/dev/ttyEND', { echo: false, record: false });
    const line = open('/dev/ttyEND');
    await line.opened();
    await line.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(line.isOpen).toBe(false);
    expect(line.counters).toMatchObject({ opens: 1, disconnects: 0 });
    expect(() => new ReconnectingSerialLine({ path: '' })).toThrow(/path/);
    expect(() => new ReconnectingSerialLine({ path: '/dev/x', baudRate: 0 })).toThrow(/baudRate/);
    expect(() => new ReconnectingSerialLine({ path: '/dev/x', minBackoffMs: 10, maxBackoffMs: 5 })).toThrow(/maxBackoffMs/);
    expect(() => new ReconnectingSerialLine({ path: '/dev/x', openTimeoutMs: -1 })).toThrow(/openTimeoutMs/);
  });

  it('with openTimeoutMs, gives up on a device that never appears: opened() rejects naming it, and retries stop', async () => {
    const line = new ReconnectingSerialLine({ path: '/dev/ttyNEVER', binding: MockBinding, minBackoffMs: 5, maxBackoffMs: 20, openTimeoutMs: 120 });
    lines.push(line);
    const err = await line.opened().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerialOpenError);
    expect((err as SerialOpenError).message).toMatch(/^cannot open serial port \/dev\/ttyNEVER: .+ \(\d+ attempts over 0 s\)$/);
    expect((err as SerialOpenError).attempts).toBeGreaterThanOrEqual(2);
    const tried = line.counters.openFailures;
    MockBinding.createPort('/dev/ttyNEVER', { echo: false, record: false }); // too late: it gave up
    await new Promise((r) => setTimeout(r, 60));
    expect(line.counters.openFailures).toBe(tried);
    expect(line.isOpen).toBe(false);
    await expect(line.opened()).rejects.toBe(err);
  });

  it('with openTimeoutMs, a port that opens in time is kept and reopened for ever after', async () => {
    const line = new ReconnectingSerialLine({ path: '/dev/ttySOON', binding: MockBinding, minBackoffMs: 5, maxBackoffMs: 20, openTimeoutMs: 150 });
    lines.push(line);
    setTimeout(() => MockBinding.createPort('/dev/ttySOON', { echo: false, record: false }), 30);
    await line.opened();
    await new Promise<void>((resolve) => line.port!.close(() => resolve())); // unplugged after the deadline window
    await new Promise((r) => setTimeout(r, 200));
    await vi.waitFor(() => expect(line.isOpen).toBe(true));
    expect(line.counters.disconnects).toBe(1);
  });
});
