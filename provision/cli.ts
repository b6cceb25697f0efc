import type { Command } from 'commander';
import { provision } from './keys.js';
import { rotateMeterKey } from './rotate.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { intOption, meterIdOption } from '../lib/flags.js';
import { NATS_ACCOUNTS_SKIPPED } from '../lib/keyset.js';
import { count } from '../lib/words.js';

/**
 * `smartermeter provision --fleet fleet.csv --out <dir> [--e2e] [--mosquitto-port 1883 --mosquitto-host 127.0.0.1
 * --mosquitto-ws-port n --mosquitto-data dir]` (the last four shape broker/mosquitto/mosquitto.conf), and
 * `smartermeter provision rotate --keys <dir> --meter <id>`.
 * @example
 * ```ts
 * registerProvisionCommand(program);
 * ```
 */
export function registerProvisionCommand(program: Command): void {
  const cmd = program.command('provision').description('create a fleet\'s key set, or rotate a meter key in it');
  cmd
    .command('create', { isDefault: true })
    .description('create meter keys and KEKs, system titles, PES/MDMS key pairs, Paillier key, broker credentials and activation codes for a fleet')
    .requiredOption('--fleet <csv>', 'fleet file: meter,household,neighbourhood,source')
    .requiredOption('--out <dir>', 'directory for the key set (must not already hold one)')
    .option('--rsa-bits <n>', 'RSA modulus size for PES and MDMS keys', intOption('--rsa-bits', 2048, 4096), 3072)
    .option('--paillier-bits <n>', 'Paillier modulus size', intOption('--paillier-bits', 1024, 4096), 2048)
    .option('--household-keys', 'also generate household key pairs (for `ucs watch`, the HA bridge and tests)', false)
    .option('--e2e', "end-to-end mode: split the Paillier secret between the PES (pes/) and the guardian (guardian/, its own key directory), no file holds the whole secret (docs/paillier.md); each meter gets its household's stream key (meters/<id>.stream, from the activation code), so the household stream is sealed at the meter", false)
    .option('--mosquitto-port <n>', 'MQTT port of broker/mosquitto/mosquitto.conf', intOption('--mosquitto-port', 1, 65535), 1883)
    .option('--mosquitto-ws-port <n>', 'also a MQTT-over-WebSocket listener on this port in mosquitto.conf', intOption('--mosquitto-ws-port', 1, 65535))
    .option('--mosquitto-host <addr>', 'interface of the Mosquitto listeners', '127.0.0.1')
    .option('--mosquitto-data <dir>', "Mosquitto's persistence folder (default <out>/broker/mosquitto/data)")
    .action(async (o: { fleet: string; out: string; rsaBits: number; paillierBits: number; householdKeys: boolean; e2e: boolean; mosquittoPort: number; mosquittoWsPort?: number; mosquittoHost: string; mosquittoData?: string }) => {
      const mosquitto = { port: o.mosquittoPort, host: o.mosquittoHost, ...(o.mosquittoWsPort ? { wsPort: o.mosquittoWsPort } : {}), ...(o.mosquittoData ? { persistenceDir: o.mosquittoData } : {}) };
      const fleet = await provision({ fleetCsv: o.fleet, out: o.out, rsaBits: o.rsaBits, paillierBits: o.paillierBits, householdKeys: o.householdKeys, e2e: o.e2e, mosquitto });
      console.log(
        `provisioned ${count(fleet.meters.length, 'meter')}, ${count(fleet.households.length, 'household')}, ${count(fleet.neighbourhoods.length, 'neighbourhood')}, ` +
          `${count(fleet.gateways.length, 'gateway')} into ${o.out} (secrets are in files with mode 0600; nothing secret was printed)`,
      );
      if (o.e2e) {
        console.log(
          `end-to-end mode: the Paillier secret is split between ${o.out}/pes and ${o.out}/guardian, and no file holds it whole. ` +
            `Hand ${o.out}/guardian to the guardian's operator and remove it from this machine. ` +
            `Each meter seals its household's stream under a key derived from the activation code (meters/<id>.stream; install it in the meter only).`,
        );
      }
      const skipped = join(o.out, NATS_ACCOUNTS_SKIPPED);
      if (existsSync(skipped)) console.warn(`note: ${readFileSync(skipped, 'utf8').trim()} (a NATS cluster cannot serve this fleet)`);
    });
  cmd
    .command('rotate')
    .description('make a meter\'s next key: wrapped under its KEK for the meter (meters/<id>.transfer) and to the PES key (pes/meter-keys.cbor)')
    .requiredOption('--keys <dir>', 'the key set')
    .requiredOption('--meter <id>', 'meter id (hex system title)', meterIdOption)
    .action((o: { keys: string; meter: string }) => {
      const r = rotateMeterKey(o);
      console.log(
        `meter ${o.meter}: key generation ${r.generation} made. 1) restart the PES with this key set (it accepts the current key and the new one), ` +
          `2) deliver ${r.transferPath} to the meter (\`smartermeter meter --key-transfer ${r.transferPath} ...\`); it switches after acknowledging it, ` +
          `and the PES retires the old key at the first frame under the new one. Nothing secret was printed.`,
      );
    });
}
