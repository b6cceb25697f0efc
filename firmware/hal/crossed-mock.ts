/**
 * A null-modem cable between two `@serialport/binding-mock` ports, for tests and replay.
 *
 * Mock ports are single endpoints: `MockPortBinding.emitData(buf)` pretends the port received `buf`, and
 * `write` only records. This module opens two `SerialPortStream`s on mock ports through a thin wrapping
 * binding whose `write` hands every chunk, after the mock's own write completes, to the currently open
 * binding of the other path. Writes on one stream are serialised by `SerialPortStream`, so byte order is
 * preserved; reopening a port (after `close()`) is rewired automatically because the wrap sits in `open`.
 *
 * The line can be cut (bytes in transit are dropped and counted) and restored, and a noise hook sees every
 * chunk in transit and may return it changed, shorter, longer, or `null` to drop it.
 * @module
 */
import { SerialPortStream } from '@serialport/stream';
import { SerialPortMock } from 'serialport';

/**
 * The binding-mock registry that `serialport` itself uses. Import `MockBinding` from here, not from
 * '@serialport/binding-mock': that package ships separate CJS and ESM builds, an ESM `import` gets a
 * second registry (so its `reset()`/`createPort()` do not reach serialport's ports), and its `exports`
 * map hides the type declarations from NodeNext resolution.
 * @example
 * ```ts
 * afterEach(() => MockBinding.reset());
 * ```
 */
export const MockBinding = SerialPortMock.binding;
/** The mock binding interface (`MockBinding`'s type). */
export type MockBindingInterface = typeof SerialPortMock.binding;
/** One open mock port binding (`emitData`, `lastWrite`, `isOpen`, ...). */
export type MockPortBinding = Awaited<ReturnType<MockBindingInterface['open']>>;

/** A serialport stream on a mock binding (what {@link openCrossedMockPair} returns). */
export type MockSerialPort = SerialPortStream<MockBindingInterface>;

/** Direction of travel on a crossed line: from the first path to the second, or back. */
export type LineDirection = 'AtoB' | 'BtoA';

/**
 * Noise hook: called with every chunk in transit; returns the bytes to deliver (possibly mutated,
 * truncated or extended) or `null` to drop the chunk. Default: deliver unchanged.
 */
export type NoiseHook = (chunk: Buffer, direction: LineDirection) => Buffer | null;

/** Byte counters of a crossed line, per direction. They only grow. */
export interface LineCounters {
  /** Bytes written into the line. */
  sent: Record<LineDirection, number>;
  /** Bytes handed to the receiving port. */
  delivered: Record<LineDirection, number>;
  /** Bytes dropped: line cut, receiver closed, or noise hook returned `null`. */
  dropped: Record<LineDirection, number>;
}

/**
 * The controller of a crossed mock line.
 * @example
 * ```ts
 * const pair = await openCrossedMockPair('/dev/meter', '/dev/gw');
 * pair.line.cut(); // bytes written now are lost
 * pair.line.restore();
 * pair.line.noise = (chunk) => (Math.random() < 0.01 ? null : chunk);
 * ```
 */
export class CrossedLine {
  readonly counters: LineCounters = {
    sent: { AtoB: 0, BtoA: 0 },
    delivered: { AtoB: 0, BtoA: 0 },
    dropped: { AtoB: 0, BtoA: 0 },
  };
  /** Transforms or drops chunks in transit; see {@link NoiseHook}. */
  noise: NoiseHook;
  private down = false;

  constructor(noise: NoiseHook = (chunk) => chunk) {
    this.noise = noise;
  }

  /** Takes the line down: every byte written until {@link restore} is dropped. */
  cut(): void {
    this.down = true;
  }

  /** Brings the line back up. */
  restore(): void {
    this.down = false;
  }

  /** Whether the line is currently cut. */
  get isCut(): boolean {
    return this.down;
  }

  /** @internal Carries one written chunk to `to` (the peer's open binding, if any). */
  carry(chunk: Buffer, direction: LineDirection, to: MockPortBinding | undefined): void {
    this.counters.sent[direction] += chunk.length;
    const out = this.down ? null : this.noise(Buffer.from(chunk), direction);
    if (out === null || !to?.isOpen) {
      this.counters.dropped[direction] += chunk.length;
      return;
    }
    if (out.length > 0) to.emitData(out);
    this.counters.delivered[direction] += out.length;
  }
}

/** The two ends of a crossed mock line, plus its controller. Destructures as `[a, b]`. */
export type CrossedPair = [MockSerialPort, MockSerialPort] & { line: CrossedLine };

export interface CrossedMockOptions {
  /** Noise hook installed on the line from the start. */
  noise?: NoiseHook;
  /** Baud rate reported by the mock ports (no timing is simulated). Default 115200. */
  baudRate?: number;
  /** Largest chunk a single read returns (binding-mock's `maxReadSize`). Default 65536. */
  maxReadSize?: number;
}

/**
 * Creates two mock ports, opens a `SerialPortStream` on each and cross-connects them: bytes written to
 * the first arrive as data on the second and vice versa. Call {@link MockBinding}`.reset()` (from this
 * module) between tests.
 * @example
 * ```ts
 * const [meterSide, gatewaySide] = await openCrossedMockPair('/dev/meter-1', '/dev/gw-1');
 * gatewaySide.on('data', (b) => console.log(b));
 * meterSide.write(Buffer.from([0x7e]));
 * ```
 */
export async function openCrossedMockPair(pathA: string, pathB: string, options: CrossedMockOptions = {}): Promise<CrossedPair> {
  const { noise, baudRate = 115200, maxReadSize = 65536 } = options;
  if (typeof pathA !== 'string' || typeof pathB !== 'string' || !pathA || !pathB || pathA === pathB) {
    throw new TypeError('two distinct, non-empty port paths are required');
  }
  const line = new CrossedLine(noise);
  const open = new Map<string, MockPortBinding>();
  const peerOf: Record<string, [string, LineDirection]> = { [pathA]: [pathB, 'AtoB'], [pathB]: [pathA, 'BtoA'] };

  const binding: MockBindingInterface = {
    ...MockBinding,
    async open(opts: Parameters<MockBindingInterface['open']>[0]) {
      const port = await MockBinding.open(opts);
      const [peer, direction] = peerOf[opts.path]!;
      const write = port.write.bind(port);
      port.write = async (buf: Buffer) => {
        await write(buf);
        line.carry(buf, direction, open.get(peer));
      };
      open.set(opts.path, port);
      return port;
    },
  };

  MockBinding.createPort(pathA, { echo: false, record: false, maxReadSize });
  MockBinding.createPort(pathB, { echo: false, record: false, maxReadSize });
  const openPort = (path: string) =>
    new Promise<MockSerialPort>((resolve, reject) => {
      const sp: MockSerialPort = new SerialPortStream({ binding, path, baudRate }, (err) => (err ? reject(err) : resolve(sp)));
    });
  const pair = (await Promise.all([openPort(pathA), openPort(pathB)])) as CrossedPair;
  pair.line = line;
  return pair;
}
