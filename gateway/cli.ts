import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { durationOption, intOption } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { loadCredentials } from '../lib/keyset.js';
import { topicId } from '../protocol/topics.js';
import { startGateway } from './gateway.js';

interface GatewayFlags {
  keys?: string;
  id: string;
  line: string[];
  mqtt: string;
  queue?: string;
  batch: number;
  batchDelay: number;
  baud: number;
  username?: string;
  password?: string;
  stats: number;
}

/**
 * `smartermeter gateway --keys <dir> --id <gw> --line <path>... [--mqtt url] [--queue file] [--batch 256]
 * [--batch-delay 20]`: the data concentrator. Logs its counters periodically (pino) and closes cleanly on
 * SIGINT/SIGTERM. Credentials come from the key set (`gateway-<id>`), or from --username/--password for a
 * broker outside it; with neither it connects anonymously (e.g. a local Mosquitto).
 * @example
 * ```ts
 * registerGatewayCommand(program);
 * ```
 */
export function registerGatewayCommand(program: Command): void {
  program
    .command('gateway')
    .description('run a data concentrator: serial lines -> opaque frames -> MQTT (QoS 1), acks after PUBACK')
    .option('--keys <dir>', 'key set made by `smartermeter provision` (for the broker credentials of gateway-<id>)')
    .requiredOption('--id <gw>', 'gateway id, e.g. gw-n1', (v: string) => {
      try {
        return topicId(v, '--id');
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .requiredOption('--line <path>', 'serial device of a meter line (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--mqtt <urls>', 'broker URL, or several comma-separated (the nodes of a cluster; reconnects to the next)', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883')
    .option('--queue <file>', 'on-disk queue (SQLite); default .smartermeter/gateway/<id>.queue.db')
    .option('--batch <n>', 'frames per uplink', intOption('--batch', 1, 1024), 256)
    .option('--batch-delay <ms>', 'longest wait for a batch to fill, ms', intOption('--batch-delay', 0, 60_000), 20)
    .option('--baud <n>', 'serial baud rate (8N1)', intOption('--baud', 50, 4_000_000), 115200)
    .option('--username <name>', 'broker user name (instead of the key set)')
    .option('--password <pw>', 'broker password (instead of the key set; visible to other local users, prefer --keys)')
    .option('--stats <interval>', 'how often to log counters, e.g. 10s, 1m', durationOption('--stats'), 10)
    .action(async (o: GatewayFlags) => {
      if (o.line.length === 0) throw new InvalidArgumentError('at least one --line is required');
      const creds = o.keys ? loadCredentials(o.keys, `gateway-${o.id}`) : { username: o.username, password: o.password };
      const logger = pino({ name: 'gateway' });
      const gw = await startGateway({
        id: o.id,
        lines: o.line,
        mqtt: { url: o.mqtt, username: creds.username, password: creds.password },
        queuePath: resolve(o.queue ?? join('.smartermeter', 'gateway', `${o.id}.queue.db`)),
        baudRate: o.baud,
        maxBatch: o.batch,
        maxDelayMs: o.batchDelay,
        logger,
      });
      const stats = setInterval(() => logger.info({ ...gw.counters, connected: gw.connected }, 'gateway: counters'), o.stats * 1000);
      await new Promise<void>((done) => {
        const stop = () => {
          clearInterval(stats);
          void gw.close().then(done);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
