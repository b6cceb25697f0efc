/**
 * The household app in the browser: registration (key pair made here), login (private key unwrapped here),
 * the household's sealed stream from the broker and the server's archive opened here, views and exports
 * made here. The server never receives a reading, a password or an unwrapped key.
 * @module
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { DateTime } from 'luxon';
import { topics } from '../../protocol/topics.js';
import { api, ApiError } from './api.js';
import { parseStreamBody } from '../../protocol/stream.js';
import { parseHouseholdTariff, type HouseholdTariff } from './bill.js';
import { bodyRows, type Row } from './body.js';
import { fromB64u, hex } from './bytes.js';
import { destroyCharts } from './charts.js';
import { dates } from './dates.js';
import { $, input, setText } from './dom.js';
import { toCsv, toEspiXml } from './export.js';
import { checkKdf, deriveSecrets, newKdfParams, passwordProblem, type KdfParams } from './kdf.js';
import { activationDerivation, activationSecrets, normaliseCode } from '../../protocol/household-key.js';
import { activationBinding, generateHouseholdKey, importPrivateKey, keyIdOf, openPrivateKey, packSecrets, pkcs8Pem, sealPrivateKey, spkiPem, unpackSecrets, WrongPasswordError } from './keys.js';
import { connectLive, type Live, type LiveStatus } from './live.js';
import { importPesVerifyKey, importStreamKey, OpenError, StreamOpener, type OpenFailure } from './seal.js';
import { MeterStreamGuard } from './stream-guard.js';
import type { Span } from './series.js';
import { walkthrough, wireCopyButtons, type BrokerAccess } from './settings.js';
import { ReadingStore } from './store.js';
import { drawBill, drawHeadline, drawHistory, drawLive, drawToday, drawUtility, fillExportDates, invalidate, moveHistory, resetViews, type HouseholdInfo, type ViewContext } from './views.js';

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
/** One date format throughout: the browser's locale, in the household's zone (named in the header). */
const fmt = dates(zone, navigator.language || 'en');

function notice(kind: 'error' | 'info' | 'success', message: string): void {
  const n = $('notice');
  n.dataset.kind = kind;
  n.textContent = message;
  n.hidden = false;
}
const clearNotice = () => {
  $('notice').hidden = true;
};

function screen(name: 'loading' | 'login' | 'register' | 'app'): void {
  for (const s of ['loading', 'login', 'register', 'app']) $(`screen-${s}`).hidden = s !== name;
  $('logout').hidden = name !== 'app';
  $('conn').hidden = name !== 'app';
}

/** Runs a form action with its button disabled; shows ApiError/WrongPasswordError messages as notices. */
async function busy(button: string, progress: string | null, work: (say: (s: string) => void) => Promise<void>): Promise<void> {
  const b = $<HTMLButtonElement>(button);
  const say = (s: string) => progress && setText(progress, s);
  b.disabled = true;
  clearNotice();
  try {
    await work(say);
  } catch (e) {
    if (e instanceof ApiError && (e.code === 'session-expired' || e.code === 'no-session') && state.household) lock(e.message);
    else notice('error', e instanceof ApiError || e instanceof WrongPasswordError ? e.message : `Something went wrong: ${(e as Error).message}`);
  } finally {
    b.disabled = false;
    say('');
  }
}

// --- state -------------------------------------------------------------------------------------------------
interface State {
  household?: string;
  tariff?: HouseholdTariff | null;
  info?: HouseholdInfo | null;
  spki?: Uint8Array;
  opener?: StreamOpener;
  store?: ReadingStore;
  live?: Live;
  received: number;
  failures: Record<OpenFailure | 'invalid', number>;
  archive: 'unknown' | 'on' | 'off';
  sessionTimer?: ReturnType<typeof setInterval>;
  activity: boolean;
  queue: Promise<void>;
  /** The opener's guard's `marked` when its state was last written to the store. */
  guardSaved: number;
}
const state: State = { received: 0, failures: { malformed: 0, otherKey: 0, tampered: 0, duplicate: 0, replayed: 0, invalid: 0 }, archive: 'unknown', activity: false, queue: Promise.resolve(), guardSaved: 0 };

// --- login, registration, lock ------------------------------------------------------------------------------
interface AccountReply {
  household: string;
  kdf: KdfParams;
  key: { iv: string; ct: string };
  spki: string;
}

/** Checks the password with the server (rate-limited there) and returns the account's wrapped key. */
async function authenticate(household: string, password: string, say: (s: string) => void): Promise<{ account: AccountReply; wrapKey: Uint8Array }> {
  say('Looking up your account…');
  const { kdf } = await api<{ kdf: unknown }>('GET', `/api/kdf?household=${encodeURIComponent(household)}`);
  say('Deriving your keys from the password (a second or two)…');
  const secrets = await deriveSecrets(password, checkKdf(kdf));
  const account = await api<AccountReply>('POST', '/api/login', { household, auth: b64(secrets.auth) });
  return { account, wrapKey: secrets.wrapKey };
}
const b64 = (u: Uint8Array) => btoa(String.fromCharCode(...u)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function unwrapAccount(account: AccountReply, wrapKey: Uint8Array): Promise<{ pkcs8: Uint8Array; streamKey: Uint8Array | null; spki: Uint8Array }> {
  const secrets = unpackSecrets(await openPrivateKey({ iv: fromB64u(account.key.iv, 'key.iv'), ct: fromB64u(account.key.ct, 'key.ct') }, wrapKey, account.household));
  return { ...secrets, spki: fromB64u(account.spki, 'spki') };
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void busy('login-submit', 'login-progress', async (say) => {
    const household = input('login-household').value.trim();
    const { account, wrapKey } = await authenticate(household, input('login-password').value, say);
    say('Unlocking your key…');
    const { pkcs8, streamKey, spki } = await unwrapAccount(account, wrapKey);
    wrapKey.fill(0);
    input('login-password').value = '';
    await enterApp(account.household, pkcs8, spki, streamKey);
  });
});

$('register-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void busy('reg-submit', 'reg-progress', async (say) => {
    const household = input('reg-household').value.trim();
    const password = input('reg-password').value;
    if (password !== input('reg-password2').value) throw new ApiError(0, 'mismatch', 'The two passwords differ.');
    const problem = passwordProblem(password, household);
    if (problem) throw new ApiError(0, 'weak-password', problem);
    const code = normaliseCode(input('reg-code').value);
    if (!code) throw new ApiError(0, 'bad-code', 'An activation code has 12 letters and digits, like ABCD-EFGH-JKLM.');
    say('Checking your activation code…');
    // One derivation gives all the code's values (protocol/household-key.ts), by the key set's derivation.
    // Only the verifier goes to the server: the code stays here (it derives the binding key and the stream
    // key, which the server must not be able to derive).
    const derivation = activationDerivation((await api<{ derivation: number }>('GET', '/api/activation')).derivation);
    const secrets = await activationSecrets(code, household, derivation);
    let ticket: string;
    try {
      ({ ticket } = await api<{ ticket: string }>('POST', '/api/register/begin', { household, verifier: b64(secrets.verifier) }));
    } catch (e) {
      secrets.binding.fill(0); // a wrong code: nothing derived from it stays
      secrets.stream.fill(0);
      throw e;
    } finally {
      secrets.verifier.fill(0);
    }
    say('Creating your key pair in this browser…');
    const { spki, pkcs8 } = await generateHouseholdKey();
    say('Binding your key to your household with the activation code…');
    const binding = await activationBinding(household, secrets.binding, spki, pkcs8);
    secrets.binding.fill(0);
    // The key the household's meters seal its stream with in the end-to-end mode (docs/protocol.md §11.5).
    const streamKey = secrets.stream;
    say('Protecting your private key with your password (a second or two)…');
    const kdf = newKdfParams();
    const { wrapKey, auth } = await deriveSecrets(password, kdf);
    const sealed = await sealPrivateKey(packSecrets(pkcs8, streamKey), wrapKey, household);
    wrapKey.fill(0);
    say('Registering…');
    const r = await api<{ household: string; keyPublished: boolean }>('POST', '/api/register/finish', {
      household,
      ticket,
      spki: b64(spki),
      binding: b64(binding),
      kdf,
      key: { iv: b64(sealed.iv), ct: b64(sealed.ct) },
      auth: b64(auth),
    });
    for (const id of ['reg-password', 'reg-password2', 'reg-code']) input(id).value = '';
    await enterApp(r.household, pkcs8, spki, streamKey);
    notice(
      'success',
      r.keyPublished
        ? `Household ${r.household} is registered. Your public key has been sent to the PES; your readings will appear here as they arrive. Download a copy of your key in Settings.`
        : `Household ${r.household} is registered. The broker is not reachable right now; your public key will be sent to the PES as soon as it is.`,
    );
  });
});

$('to-register').addEventListener('click', (ev) => {
  ev.preventDefault();
  clearNotice();
  screen('register');
});
$('to-login').addEventListener('click', (ev) => {
  ev.preventDefault();
  clearNotice();
  screen('login');
});
$('logout').addEventListener('click', () => {
  void api('POST', '/api/logout').finally(() => lock('You have logged out. Your readings stay in this browser until you choose “Forget” in Settings.', 'info'));
});

/** Drops the key and the connection and goes back to the login screen with `message`. */
function lock(message: string, kind: 'error' | 'info' = 'error'): void {
  const hh = state.household;
  void state.live?.close();
  state.store?.close();
  if (state.sessionTimer) clearInterval(state.sessionTimer);
  Object.assign(state, { household: undefined, spki: undefined, opener: undefined, store: undefined, live: undefined, sessionTimer: undefined, tariff: undefined, info: undefined });
  destroyCharts();
  resetViews();
  if (hh) input('login-household').value = hh;
  setText('who', '');
  screen('login');
  notice(kind, message);
}

/** Tells the server the household is active (and locks at once if the session has expired). */
function touchSession(): void {
  if (!state.household) return;
  state.activity = false;
  api('POST', '/api/session/touch').catch((e: unknown) => {
    if (e instanceof ApiError && (e.code === 'session-expired' || e.code === 'no-session')) lock(e.message);
  });
}

/** Keeps the server session alive while the household is active, and locks when it expires. */
function watchSession(idleS: number): void {
  const every = Math.max(1, Math.min(30, Math.floor(idleS / 3))) * 1000;
  for (const ev of ['pointerdown', 'keydown', 'wheel']) document.addEventListener(ev, () => (state.activity = true), { passive: true });
  state.sessionTimer = setInterval(() => {
    const touch = state.activity;
    state.activity = false;
    api(touch ? 'POST' : 'GET', touch ? '/api/session/touch' : '/api/session').catch((e: unknown) => {
      if (e instanceof ApiError && (e.code === 'session-expired' || e.code === 'no-session')) lock(e.message);
    });
  }, every);
}

// --- the app -------------------------------------------------------------------------------------------------
async function enterApp(household: string, pkcs8: Uint8Array, spki: Uint8Array, streamKeyBytes: Uint8Array | null): Promise<void> {
  const key = await importPrivateKey(pkcs8);
  pkcs8.fill(0);
  const streamKey = streamKeyBytes && (await importStreamKey(streamKeyBytes));
  streamKeyBytes?.fill(0);
  const kid = await keyIdOf(spki);
  // The PES's signature key: a stream epoch it did not sign never opens (docs/protocol.md §11.2).
  const pes = await api<{ spki: string }>('GET', '/api/pes-key');
  const pesKey = await importPesVerifyKey(fromB64u(pes.spki, 'PES key'));
  const store = await ReadingStore.open(household);
  Object.assign(state, { household, spki, opener: new StreamOpener(key, kid, pesKey, streamKey, await restoreGuard(store)), store, received: 0, guardSaved: 0 });
  state.failures = { malformed: 0, otherKey: 0, tampered: 0, duplicate: 0, replayed: 0, invalid: 0 };
  setText('who', `Household ${household}`);
  screen('app');
  showTab('live');
  const session = await api<{ idleS: number }>('GET', '/api/session');
  watchSession(session.idleS);
  const { boundAt } = await api<{ boundAt: number | null }>('GET', '/api/key');
  setText('key-info', keyInfo(household, hex(kid), boundAt));
  await loadHouseholdFacts();
  await refresh();
  const broker = await api<BrokerAccess & { wsUrl: string; topic: string; archive: boolean }>('GET', '/api/broker');
  walkthrough(household, broker);
  state.archive = broker.archive ? 'on' : 'off';
  await syncArchive();
  let wasOffline = false;
  state.live = connectLive(
    { ...broker, clientId: deviceClientId(household), clean: broker.archive },
    (payload) => enqueue(payload),
    (status: LiveStatus, detail?: string) => {
      const c = $('conn');
      c.dataset.status = status;
      c.textContent = { connecting: 'connecting…', live: 'live', offline: 'offline', refused: 'refused' }[status];
      if (status === 'refused' && detail) notice('error', detail);
      if (status === 'offline') wasOffline = true;
      if (status === 'live' && wasOffline) {
        wasOffline = false;
        // Fill the gap from the server's archive, in the queue before what arrives live from now on: a gap
        // message opened after a newer live one still fits its meter's window, but in order is plainer.
        state.queue = state.queue.then(syncArchive).catch(() => undefined);
      }
    },
  );
}

/** A stable client id per device and household, so the broker can keep this device's session. */
function deviceClientId(household: string): string {
  const k = `smartermeter-device-${household}`;
  let id = localStorage.getItem(k);
  if (!id) localStorage.setItem(k, (id = hex(crypto.getRandomValues(new Uint8Array(6)))));
  return `household-${household}-web-${id}`;
}

function keyInfo(household: string, kid: string, boundAt: number | null): string {
  const bound = boundAt === null ? '' : ` It was bound to household ${household} on ${fmt.dateTime(boundAt)} (only your activation code or this key can bind another).`;
  return `Key id ${kid}.${bound}`;
}

/** The tariff and the household's meters, which the views band, price and place the readings with. */
async function loadHouseholdFacts(): Promise<void> {
  const t = await api<{ configured: boolean; tariff?: unknown }>('GET', '/api/tariff');
  try {
    state.tariff = t.configured ? parseHouseholdTariff(t.tariff) : null;
  } catch (e) {
    state.tariff = null;
    notice('error', `The tariff this server gives is not valid, so costs are not shown: ${(e as Error).message}`);
  }
  state.info = await api<HouseholdInfo>('GET', '/api/household');
}

/** Messages are opened and stored one at a time, in arrival order. */
function enqueue(payload: Uint8Array): void {
  state.queue = state.queue.then(() => ingest(payload)).catch(() => undefined);
}

/**
 * The meters' anti-replay windows this browser kept (ucs/web/stream-guard.ts), so that a meter-sealed message
 * replayed after a reload is still refused; a damaged state starts afresh, and says so.
 */
async function restoreGuard(store: ReadingStore): Promise<MeterStreamGuard> {
  try {
    return new MeterStreamGuard(await store.getMeta(GUARD_META));
  } catch (e) {
    notice('error', `The frame counters this browser kept for your meters are damaged (${(e as Error).message}); starting afresh, so an old message replayed now would not be noticed.`);
    return new MeterStreamGuard();
  }
}
const GUARD_META = 'meterStreamWindows';

/**
 * Opens one message into rows, or counts why it did not open (null). From the server's archive, a message the
 * guard has already accepted counts as a duplicate whatever its age: the archive repeats what came live.
 */
async function openRows(payload: Uint8Array, fromArchive = false): Promise<Row[] | null> {
  const { opener, household } = state;
  if (!opener || !household) return null;
  try {
    return bodyRows(parseStreamBody(await opener.open(topics.household(household), payload)));
  } catch (e) {
    let reason: OpenFailure | 'invalid' = e instanceof OpenError ? e.reason : 'invalid';
    if (fromArchive && reason === 'replayed') reason = 'duplicate';
    state.failures[reason]++;
    if (reason === 'replayed' && state.failures.replayed === 1) {
      notice('error', `A message from your meter was presented again (${(e as Error).message}); it was not stored. Someone who can publish on your stream may be replaying old messages.`);
    }
    if (reason === 'otherKey' && state.failures.otherKey === 1) {
      notice('info', 'Some messages were sealed for another key of your household (before you registered this one); they cannot be opened here.');
    }
    return null;
  }
}

async function keep(rows: Row[], into: ReadingStore): Promise<void> {
  if (state.store !== into) return; // logged out meanwhile
  await into.put(rows);
  // After the rows: a crash in between re-opens the message later, and the store keeps it once.
  const guard = state.opener?.guard;
  if (guard && guard.marked !== state.guardSaved) {
    state.guardSaved = guard.marked;
    await into.setMeta(GUARD_META, guard.state());
  }
  if (rows.length === 0) return;
  invalidate(rows);
  state.received += rows.length;
  scheduleRefresh();
}

async function ingest(payload: Uint8Array): Promise<void> {
  const into = state.store;
  const rows = await openRows(payload);
  if (into && rows) await keep(rows, into);
}

/** Fetches the server's archive (sealed messages) after the last one this browser has seen, a page per transaction. */
async function syncArchive(): Promise<void> {
  const into = state.store;
  if (!into || state.archive !== 'on') return;
  let after = (await into.getMeta<number>('archiveSeq')) ?? 0;
  for (;;) {
    const page = await api<{ items: [number, string][]; more: boolean }>('GET', `/api/archive?after=${after}&limit=500`);
    const rows: Row[] = [];
    for (const [seq, payload] of page.items) {
      rows.push(...((await openRows(fromB64u(payload, 'archived message'), true)) ?? []));
      after = seq;
    }
    if (state.store !== into) return;
    await keep(rows, into);
    await into.setMeta('archiveSeq', after);
    if (!page.more) break;
  }
}

// --- views ---------------------------------------------------------------------------------------------------
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
function scheduleRefresh(): void {
  refreshTimer ??= setTimeout(() => {
    refreshTimer = undefined;
    void refresh();
  }, 300);
}

const TABS = ['live', 'today', 'history', 'bill', 'utility', 'export', 'settings'] as const;
let activeTab = 'live';
function showTab(tab: string): void {
  activeTab = tab;
  touchSession();
  for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>('#tabs button'))) b.classList.toggle('active', b.dataset.tab === tab);
  for (const t of TABS) $(`tab-${t}`).hidden = t !== tab;
  void refresh();
}
for (const b of Array.from(document.querySelectorAll<HTMLButtonElement>('#tabs button'))) b.addEventListener('click', () => showTab(b.dataset.tab!));

let drawing = false;
let redraw = false;
/** Redraws the active view; calls made while drawing coalesce into one more draw, so the last request wins. */
async function refresh(): Promise<void> {
  if (drawing) {
    redraw = true;
    return;
  }
  drawing = true;
  try {
    do {
      redraw = false;
      const store = state.store;
      if (!store) return;
      try {
        await draw({ store, tariff: state.tariff ?? null, info: state.info ?? null, dates: fmt });
      } catch (e) {
        if (state.store === store) throw e; // otherwise the household logged out meanwhile
      }
    } while (redraw);
  } finally {
    drawing = false;
  }
}

async function draw(c: ViewContext): Promise<void> {
  await drawHeadline(c);
  if (activeTab === 'live') await drawLive(c);
  else if (activeTab === 'today') await drawToday(c);
  else if (activeTab === 'history') await drawHistory(c);
  else if (activeTab === 'bill') await drawBill(c);
  else if (activeTab === 'utility') await drawUtility(c);
  else if (activeTab === 'export') await fillExportDates(c);
  else if (activeTab === 'settings') {
    const f = state.failures;
    setText(
      'device-info',
      `${await c.store.count()} readings stored in this browser; ${state.received} received since login. Archive on the server: ${state.archive}. ` +
        `Messages that could not be opened: ${f.otherKey} for another key, ${f.tampered} failed authentication, ${f.malformed + f.invalid} malformed. ` +
        `Meter-sealed messages dropped: ${f.replayed} replayed (a frame counter already seen or too old), ${f.duplicate} received twice.`,
    );
  }
}

for (const id of ['live-window', 'today-interval', 'history-span']) input(id).addEventListener('change', () => void refresh());
for (const [id, by] of [['history-prev', -1], ['history-next', 1]] as const) {
  $(id).addEventListener('click', () => {
    moveHistory(by, input('history-span').value as Span, zone);
    void refresh();
  });
}

// --- export --------------------------------------------------------------------------------------------------
async function exportRows(): Promise<{ rows: Row[]; from: string; to: string }> {
  const store = state.store!;
  const from = input('export-from').value;
  const to = input('export-to').value;
  const start = DateTime.fromISO(from, { zone });
  const end = DateTime.fromISO(to, { zone }).plus({ days: 1 });
  if (!start.isValid || !end.isValid || end <= start) throw new ApiError(0, 'bad-range', 'Choose a start date on or before the end date.');
  return { rows: await store.between(start.toSeconds(), end.toSeconds()), from, to };
}

function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

$('export-csv').addEventListener('click', () => {
  void busy('export-csv', null, async () => {
    const { rows, from, to } = await exportRows();
    download(`smartermeter-${state.household}-${from}-${to}.csv`, 'text/csv', toCsv(rows));
    setText('export-result', `${rows.length} readings exported as CSV.`);
  });
});
$('export-xml').addEventListener('click', () => {
  void busy('export-xml', null, async () => {
    const { rows, from, to } = await exportRows();
    download(`smartermeter-${state.household}-${from}-${to}.xml`, 'application/atom+xml', toEspiXml(rows, { household: state.household!, zone }));
    setText('export-result', `${rows.length} readings exported as Green Button XML.`);
  });
});

// --- settings ------------------------------------------------------------------------------------------------
$('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void busy('key-download', null, async (say) => {
    const hh = state.household!;
    const { account, wrapKey } = await authenticate(hh, input('key-password').value, say);
    const { pkcs8, streamKey } = await unwrapAccount(account, wrapKey);
    streamKey?.fill(0);
    input('key-password').value = '';
    download(`${hh}.key.pem`, 'application/x-pem-file', pkcs8Pem(pkcs8));
    pkcs8.fill(0);
    notice('success', 'Your private key was downloaded. Keep it as safe as your password.');
  });
});

$('pes-key-download').addEventListener('click', () => {
  void busy('pes-key-download', null, async () => {
    const { spki } = await api<{ spki: string }>('GET', '/api/pes-key');
    download('pes-sign.pub.pem', 'application/x-pem-file', spkiPem(fromB64u(spki, 'PES key')));
  });
});
wireCopyButtons(document);

$('pw-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void busy('pw-submit', null, async (say) => {
    const hh = state.household!;
    const next = input('pw-new').value;
    if (next !== input('pw-new2').value) throw new ApiError(0, 'mismatch', 'The two new passwords differ.');
    const problem = passwordProblem(next, hh);
    if (problem) throw new ApiError(0, 'weak-password', problem);
    const { kdf } = await api<{ kdf: unknown }>('GET', `/api/kdf?household=${encodeURIComponent(hh)}`);
    const old = await deriveSecrets(input('pw-old').value, checkKdf(kdf));
    const { key } = await api<AccountReply>('POST', '/api/login', { household: hh, auth: b64(old.auth) });
    // The private key and the stream key, re-sealed as they are under the new password.
    const secrets = await openPrivateKey({ iv: fromB64u(key.iv, 'key.iv'), ct: fromB64u(key.ct, 'key.ct') }, old.wrapKey, hh);
    const newKdf = newKdfParams();
    const fresh = await deriveSecrets(next, newKdf);
    const sealed = await sealPrivateKey(secrets, fresh.wrapKey, hh);
    secrets.fill(0);
    await api('POST', '/api/password', { auth: b64(old.auth), newAuth: b64(fresh.auth), kdf: newKdf, key: { iv: b64(sealed.iv), ct: b64(sealed.ct) } });
    for (const id of ['pw-old', 'pw-new', 'pw-new2']) input(id).value = '';
    say('');
    notice('success', 'Your password was changed. Other devices have been logged out.');
  });
});

$('forget-device').addEventListener('click', () => {
  void busy('forget-device', null, async () => {
    const hh = state.household!;
    if (!confirm('Delete every reading stored in this browser? They can be fetched again from the server archive, if it is on.')) return;
    state.store?.close();
    await ReadingStore.forget(hh);
    state.store = await ReadingStore.open(hh);
    resetViews();
    await syncArchive();
    await refresh();
    notice('info', 'The readings stored in this browser were deleted.');
  });
});

$('delete-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void busy('delete-submit', null, async (say) => {
    const hh = state.household!;
    if (!confirm(`Delete the account of household ${hh}? Registering again needs a new activation code.`)) return;
    const { kdf } = await api<{ kdf: unknown }>('GET', `/api/kdf?household=${encodeURIComponent(hh)}`);
    say('');
    const { auth } = await deriveSecrets(input('delete-password').value, checkKdf(kdf));
    await api('POST', '/api/account/delete', { auth: b64(auth) });
    state.store?.close();
    await ReadingStore.forget(hh);
    lock(`The account of household ${hh} was deleted, and the readings in this browser with it.`, 'info');
  });
});

// --- start ---------------------------------------------------------------------------------------------------
async function boot(): Promise<void> {
  if (!globalThis.crypto?.subtle) {
    screen('login');
    notice('error', 'This page must be opened over HTTPS (or from this computer as localhost): browsers offer the cryptography it needs only on secure connections.');
    return;
  }
  try {
    const s = await api<{ household: string }>('GET', '/api/session');
    input('login-household').value = s.household;
    setText('login-hint', `You are signed in as household ${s.household}. Enter your password to unlock your readings in this browser.`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'session-expired') notice('info', e.message);
  }
  screen(location.hash === '#register' ? 'register' : 'login');
}
void boot();
