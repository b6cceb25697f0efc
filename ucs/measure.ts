/**
 * Figures for the household app (not a test): `node bin/run-ts.js ucs/measure.ts`. Builds the bundle, then in
 * Chromium (SM_CHROMIUM or /usr/bin/chromium) times key generation, the password KDF and opening stream
 * messages with the app's own modules; in Node, the same KDF and opener.
 * @module
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { newStreamKey, sealStream } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';
import { appBundle } from './bundle.js';
import { b64u } from './web/bytes.js';
import { deriveSecrets, newKdfParams } from './web/kdf.js';
import { generateHouseholdKey, importPrivateKey, keyIdOf } from './web/keys.js';
import { importPesVerifyKey, StreamOpener } from './web/seal.js';

const ms = (t0: number) => `${(performance.now() - t0).toFixed(0)} ms`;
const N = 500;

let t = performance.now();
const app = await appBundle();
console.log(`bundle: ${app['/app.js'].body.length} B script, ${app['/app.css'].body.length} B css, built in ${ms(t)}`);

t = performance.now();
await deriveSecrets('correct horse battery staple', newKdfParams());
console.log(`node: scrypt N=2^17 r=8 p=1 + HKDF: ${ms(t)}`);
const { spki, pkcs8 } = await generateHouseholdKey();
const pub = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
const topic = topics.household('hh1');
const body = { meter: '534d520000000001', prevWh: 1000, readings: Array.from({ length: 15 }, (_, i) => [1_717_200_000 + 60 * i, 60, 1001 + i, 60, 0]) };
const pesSign = generateKeyPairSync('ed25519');
const sk = newStreamKey(pub, 19875, topic, pesSign.privateKey);
const payloads = Array.from({ length: N }, () => sealStream(sk, topic, body));
console.log(`stream message of 15 readings (3072-bit key): ${payloads[0]!.length} B`);
const opener = new StreamOpener(await importPrivateKey(pkcs8), await keyIdOf(spki), await importPesVerifyKey(pesSign.publicKey.export({ type: 'spki', format: 'der' })));
t = performance.now();
for (const p of payloads) await opener.open(topic, p);
console.log(`node: opened ${N} stream messages in ${ms(t)} (${opener.unwraps} RSA unwrap)`);

// In Chromium, with the app's modules.
const probe = await build({
  stdin: {
    contents: `import { deriveSecrets, newKdfParams } from './ucs/web/kdf.ts'; import { generateHouseholdKey, importPrivateKey, keyIdOf } from './ucs/web/keys.ts'; import { StreamOpener } from './ucs/web/seal.ts'; import { fromB64u } from './ucs/web/bytes.ts';
      window.measure = async (pkcs8, spki, payloads, topic) => {
        const out = {}; let t = performance.now();
        await generateHouseholdKey(); out.keygen3072 = performance.now() - t;
        t = performance.now(); await deriveSecrets('correct horse battery staple', newKdfParams()); out.scrypt = performance.now() - t;
        const o = new StreamOpener(await importPrivateKey(fromB64u(pkcs8, 'k')), await keyIdOf(fromB64u(spki, 's')));
        const ps = payloads.map((p) => fromB64u(p, 'p'));
        t = performance.now(); for (const p of ps) await o.open(topic, p); out.open = performance.now() - t;
        return out;
      };`,
    resolveDir: process.cwd(),
    loader: 'ts',
  },
  bundle: true,
  format: 'iife',
  platform: 'browser',
  write: false,
});
const srv = createServer((req, res) => {
  if (req.url === '/m.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(probe.outputFiles[0]!.contents);
  else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script src="/m.js"></script>');
});
await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
const browser = await chromium.launch({ executablePath: process.env.SM_CHROMIUM ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/`);
  const r = (await page.evaluate(
    ([k, s, p, tp]) => (window as unknown as { measure: (...a: unknown[]) => Promise<Record<string, number>> }).measure(k, s, p, tp),
    [b64u(pkcs8), b64u(spki), payloads.map((p) => b64u(p)), topic] as const,
  )) as Record<string, number>;
  console.log(`chromium: RSA-3072 key generation ${r.keygen3072!.toFixed(0)} ms; scrypt N=2^17 + HKDF ${r.scrypt!.toFixed(0)} ms; opened ${N} stream messages in ${r.open!.toFixed(0)} ms`);
} finally {
  await browser.close();
  srv.close();
}
