import type { Command } from 'commander';
import { createLogger } from '../lib/log.js';
import { intOption, readTlsFlags } from '../lib/flags.js';
import { brokerUsersPath } from '../lib/keyset.js';
import { startBroker } from './broker.js';
import { loadUsers } from '../lib/broker-users.js';

/**
 * `smartermeter broker --keys <dir> [--port 1883] [--ws-port 8083] [--host 127.0.0.1] [--state file]
 * [--tls-cert cert.pem --tls-key key.pem]`: the
 * embedded aedes broker with the users and ACLs of `<dir>/broker/users.json`. With `--state` its sessions
 * (persistent subscriptions, queued QoS 1 messages) are kept in that SQLite file and survive a crash; without
 * it they are kept in memory. With `--tls-cert/--tls-key` both listeners speak TLS (mqtts, wss). Stops cleanly
 * on SIGINT/SIGTERM.
 * @example
 * ```ts
 * registerBrokerCommand(program);
 * ```
 */
export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('run the embedded MQTT broker (aedes) with the fleet users and topic ACLs')
    .requiredOption('--keys <dir>', 'key set made by `smartermeter provision`')
    .option('--port <n>', 'MQTT/TCP port (0 = any free port)', intOption('--port', 0, 65535), 1883)
    .option('--ws-port <n>', 'MQTT-over-WebSocket port (0 = any free port; 8083 leaves 8080 to the MDMS web app)', intOption('--ws-port', 0, 65535), 8083)
    .option('--host <addr>', 'interface to listen on', '127.0.0.1')
    .option('--state <file>', 'SQLite file for sessions and queued messages, so they survive a crash (default: in memory)')
    .option('--tls-cert <pem>', 'TLS certificate chain: both listeners speak TLS (mqtts, wss)')
    .option('--tls-key <pem>', 'TLS private key (with --tls-cert)')
    .action(async (o: { keys: string; port: number; wsPort: number; host: string; state?: string; tlsCert?: string; tlsKey?: string }) => {
      const logger = createLogger('broker');
      const tls = readTlsFlags(o);
      const broker = await startBroker({ users: loadUsers(brokerUsersPath(o.keys)), host: o.host, port: o.port, wsPort: o.wsPort, stateFile: o.state, logger, ...(tls ? { tls } : {}) });
      console.log(`broker listening on ${broker.url} and ${broker.wsUrl}`);
      await new Promise<void>((resolve) => {
        const stop = () => void broker.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
