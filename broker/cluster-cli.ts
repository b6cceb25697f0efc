import type { Command } from 'commander';
import { durationOption, intOption } from '../lib/flags.js';
import { markSupervisor, startNatsCluster, stopClusterDir, type NatsCluster } from './nats-cluster.js';

/**
 * `smartermeter cluster up --dir D [--nodes 3] [--keys K] [--host 127.0.0.1] [--ack-wait 30s]`: a NATS cluster
 * serving MQTT with JetStream-replicated sessions (broker/nats-cluster.ts) on free ports, with the fleet's users
 * and permissions from `K/nats/accounts.conf`; prints the MQTT URLs (one comma-separated list for every
 * component's `--mqtt`) and runs until Ctrl-C or `smartermeter cluster down --dir D`, which stop the nodes.
 * @example
 * ```ts
 * registerClusterCommand(program);
 * ```
 */
export function registerClusterCommand(program: Command): void {
  const cmd = program.command('cluster').description('a clustered MQTT broker: NATS Server nodes with MQTT sessions replicated in JetStream');
  cmd
    .command('up')
    .description('write the nodes\' configurations, start them, wait until ready, print the MQTT URLs; Ctrl-C stops them')
    .requiredOption('--dir <dir>', 'cluster folder: layout, configurations, JetStream stores, logs (started again, the same ports and state)')
    .option('--nodes <n>', 'number of nodes (MQTT streams are replicated on 3, or all if fewer)', intOption('--nodes', 1, 7))
    .option('--keys <dir>', "key set whose nats/accounts.conf holds the fleet's users and permissions (without it: anonymous, development only)")
    .option('--host <addr>', 'interface of every listener (a new cluster)', '127.0.0.1')
    .option('--ack-wait <duration>', 'resend an unacknowledged QoS 1 message after this long', durationOption('--ack-wait'))
    .action(async (o: { dir: string; nodes?: number; keys?: string; host: string; ackWait?: number }) => {
      if (!o.keys) console.warn('warning: no --keys: the cluster accepts anonymous MQTT clients with every right (development only)');
      let cluster: NatsCluster | undefined;
      cluster = await startNatsCluster({
        dir: o.dir,
        ...(o.nodes !== undefined ? { nodes: o.nodes } : {}),
        ...(o.keys !== undefined ? { keysDir: o.keys } : {}),
        host: o.host,
        ...(o.ackWait !== undefined ? { ackWaitS: o.ackWait } : {}),
        onNodeExit: (node, code, signal) => {
          const left = cluster ? cluster.nodes.filter((n) => n.running).length : 0;
          console.warn(`node ${node} exited (${signal ?? `code ${code}`}); ${left} of ${cluster?.nodes.length ?? '?'} still run`);
        },
      });
      markSupervisor(cluster.dir, process.pid);
      const { layout } = cluster;
      console.log(`cluster ${layout.name}: ${cluster.nodes.length} nodes ready in ${cluster.dir}, JetStream meta leader ${cluster.metaLeader}`);
      console.log(`mqtt: ${cluster.mqttUrls}`);
      console.log(`monitoring: ${cluster.nodes.map((n) => `http://${layout.host}:${n.ports.http}`).join(',')}`);
      console.log(`stop: Ctrl-C, or smartermeter cluster down --dir ${o.dir}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
        void Promise.all(cluster.nodes.map((n) => n.exited)).then(() => resolve());
      });
      await cluster.stop();
      markSupervisor(cluster.dir, undefined);
      console.log(`cluster ${layout.name}: stopped`);
    });
  cmd
    .command('down')
    .description('stop the cluster of a folder (its nodes, and the `cluster up` that runs them)')
    .requiredOption('--dir <dir>', 'cluster folder')
    .action(async (o: { dir: string }) => {
      const n = await stopClusterDir(o.dir);
      console.log(n > 0 ? `stopped ${n} node(s) of ${o.dir}` : `no node of ${o.dir} was running`);
    });
}
