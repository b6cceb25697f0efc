// Worker thread of the randomiser pool (pool.ts): builds its own fixed-base table(s) from the spec in
// workerData, then answers each {type:'fill', count} with {type:'batch', values: bigint[]} of fresh
// randomisers h_s^r mod n^2. Plain JavaScript so that it loads without a TypeScript loader.
import { parentPort, workerData } from 'node:worker_threads';
import { randomiserSource } from './kernel.js';

const source = randomiserSource(workerData);
parentPort.on('message', (msg) => {
  if (!msg || msg.type !== 'fill' || !Number.isInteger(msg.count) || msg.count < 1) return;
  const values = new Array(msg.count);
  for (let i = 0; i < msg.count; i++) values[i] = source.next();
  parentPort.postMessage({ type: 'batch', values });
});
parentPort.postMessage({ type: 'ready' });
