/** Shared helpers for gateway tests: ciphered test frames, an ack reader, polling, a quiet logger. */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { decodeMessage, encodeFrame, MSG_ACK, meterId, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';
import { decodeUplink } from '../../protocol/uplink.js';

export const quiet = pino({ level: process.env.SM_TEST_LOG ?? 'silent' });

/** A test meter: its key and a function making ciphered frame messages (CBOR bytes). */
export function testMeter(serial: number) {
  const key = randomBytes(32);
  const st = systemTitle('SMR', serial);
  return {
    key,
    st,
    id: meterId(st),
    /** The CBOR message of frame `ic` (plaintext is just a marker, not a real reading batch). */
    frame(ic: number, plaintext: Uint8Array = Buffer.from(`m${serial}-f${ic}`)): Buffer {
      return encodeFrame(sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic }, plaintext));
    },
    /** The same, wrapped in a link frame ready for the wire. */
    link(ic: number): Buffer {
      return encodeLinkFrame(this.frame(ic));
    },
  };
}

/** Collects the acks a meter-side port receives, as `meterId:ic` strings in arrival order. */
export function ackReader(port: Duplex): { acks: string[]; other: number } {
  const out = { acks: [] as string[], other: 0 };
  const parser = port.pipe(new LinkParser());
  parser.on('data', (p: Buffer) => {
    const m = decodeMessage(p);
    if (m.type === MSG_ACK) out.acks.push(`${meterId(m.systemTitle)}:${m.ic}`);
    else out.other++;
  });
  return out;
}

/** Polls `cond` every 10 ms until true; throws with `what` after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Subscribes to `topic` and records every frame of every uplink (hex of the exact bytes), in order. */
export async function uplinkSubscriber(url: string, topic: string, opts: mqtt.IClientOptions = {}) {
  const client: MqttClient = await mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts });
  const frames: string[] = [];
  const uplinks: { gateway: string; count: number }[] = [];
  client.on('message', (_t, payload) => {
    const u = decodeUplink(payload);
    uplinks.push({ gateway: u.gateway, count: u.frames.length });
    for (const f of u.frames) frames.push(Buffer.from(f).toString('hex'));
  });
  await client.subscribeAsync(topic, { qos: 1 });
  return { client, frames, uplinks };
}

/** A free TCP port on 127.0.0.1 (listen on 0, then close). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}
