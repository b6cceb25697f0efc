/**
 * A client generated from the MDMS's OpenAPI document (issue 20 item 14): openapi-typescript (a devDependency)
 * turns /openapi.json into types, one per operationId; a call written against them type-checks with tsc,
 * and a call with a wrong parameter does not (so the types say something). The call is then made against the
 * app and its answer has what the types promise.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORDS, appOf, fixture, type Fixture } from './fixture.js';

/** The generator's package (a devDependency; a computed name so that tsc does not need it to type-check this file). */
const GENERATOR = 'openapi-typescript';
interface Generator {
  default: (schema: object) => Promise<unknown>;
  astToString: (ast: unknown) => string;
}

const require = createRequire(import.meta.url);
const TSC = require.resolve('typescript/bin/tsc');
const dir = mkdtempSync(join(tmpdir(), 'mdms-openapi-client-'));
let fx: Fixture;
let app: FastifyInstance;

beforeAll(async () => {
  fx = await fixture();
  app = await appOf(fx);
}, 120_000);
afterAll(async () => {
  await app?.close();
  await fx?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** tsc on files of `dir`, strict; the diagnostics, or '' when they type-check. */
function typecheck(...files: string[]): string {
  try {
    execFileSync(process.execPath, [TSC, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', ...files], { cwd: dir, encoding: 'utf8' });
    return '';
  } catch (e) {
    return String((e as { stdout?: string }).stdout ?? e);
  }
}

const call = (query: string) => `import type { operations } from './mdms-api.js';
type Op = operations['getAccountBill'];
export type Bill = Op['responses'][200]['content']['application/json'];
export async function accountBill(base: string, account: Op['parameters']['path']['account'], cookie: string): Promise<Bill> {
  const query: Op['parameters']['query'] = ${query};
  const res = await fetch(\`\${base}/api/v1/accounts/\${encodeURIComponent(account)}/bill?\${new URLSearchParams(query)}\`, { headers: { cookie } });
  if (!res.ok) throw new Error(String(res.status));
  return (await res.json()) as Bill;
}
export const totalOf = (b: Bill): number => b.totalMinor;
`;

describe('a client generated from /openapi.json', () => {
  it('type-checks a call to getAccountBill, refuses a wrong one, and the answer has the promised fields', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json() as object;
    const { default: openapiTS, astToString } = (await import(GENERATOR).catch((e: Error) => {
      throw new Error(`${GENERATOR} is a devDependency of this test (npm install --save-dev ${GENERATOR}@7): ${e.message}`);
    })) as Generator;
    writeFileSync(join(dir, 'mdms-api.ts'), astToString(await openapiTS(doc)));
    writeFileSync(join(dir, 'client.ts'), call("{ from: '2024-06-03', to: '2024-06-10' }"));
    writeFileSync(join(dir, 'wrong.ts'), call("{ start: '2024-06-03', to: '2024-06-10' }"));
    const diagnostics = typecheck('client.ts', 'wrong.ts'); // one tsc run for both (it takes seconds)
    expect(diagnostics).not.toMatch(/(client|mdms-api)\.ts\(/);
    expect(diagnostics).toMatch(/wrong\.ts\(\d+,\d+\): error TS\d+: [^\n]*'start'/);

    const login = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: 'billing', password: PASSWORDS.billing } });
    const cookie = [login.headers['set-cookie']].flat().map((c) => String(c).split(';')[0]).join('; ');
    const account = (await fx.web.accounts.byHousehold('hh02'))!.accountNumber;
    const bill = (await app.inject({ url: `/api/v1/accounts/${account}/bill?from=2024-06-03&to=2024-06-10`, headers: { cookie } })).json() as Record<string, unknown>;
    expect(typeof bill.totalMinor).toBe('number');
  });
});
