/**
 * Settings: the household's own broker access (the URL its tools reach, its username and password, which read
 * only its own sealed stream) with copy buttons, and the walkthrough for `ucs watch` and the Home Assistant
 * bridge: the exact commands, with this household's values filled in, that a test runs as shown.
 * @module
 */
import { $, setText } from './dom.js';

/** What `/api/broker` tells the household about its own broker access. */
export interface BrokerAccess {
  /** The broker URL the household's own tools reach (mqtt://, mqtts://, ws:// or wss://). */
  mqttUrl: string;
  username: string;
  password: string;
}

/**
 * A word for a POSIX shell, quoted only when it needs to be.
 * @example
 * ```ts
 * shellWord("it's"); // `'it'\''s'`
 * ```
 */
export function shellWord(w: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/**
 * File names the walkthrough uses: the downloads' own names, and the password file it makes.
 * @example
 * ```ts
 * files('hh1').key; // 'hh1.key.pem'
 * ```
 */
export const files = (household: string) => ({ key: `${household}.key.pem`, pesKey: 'pes-sign.pub.pem', password: `household-${household}.password` });

/**
 * The walkthrough's commands for a household (the Home Assistant broker is the one placeholder the household
 * replaces).
 * @example
 * ```ts
 * commands('hh1', { mqttUrl: 'wss://broker.example:8083', username: 'household-hh1', password: 'pw' }).watch;
 * ```
 */
export function commands(household: string, b: BrokerAccess): { password: string; watch: string; haBridge: string } {
  const f = files(household);
  const access = ['--household', household, '--key', f.key, '--pes-key', f.pesKey, '--mqtt', b.mqttUrl, '--username', b.username, '--password-file', f.password].map(shellWord).join(' ');
  return {
    password: `umask 077 && printf '%s\\n' ${shellWord(b.password)} > ${shellWord(f.password)}`,
    watch: `npx smartermeter ucs watch ${access}`,
    haBridge: `npx smartermeter ucs ha-bridge ${access} --ha-mqtt mqtt://homeassistant.local:1883`,
  };
}

/**
 * Fills the broker details and the walkthrough in Settings.
 * @example
 * ```ts
 * walkthrough('hh1', await api('GET', '/api/broker'));
 * ```
 */
export function walkthrough(household: string, b: BrokerAccess): void {
  setText('broker-url', b.mqttUrl);
  setText('broker-username', b.username);
  setText('broker-password', b.password);
  const c = commands(household, b);
  setText('cmd-password', c.password);
  setText('cmd-watch', c.watch);
  setText('cmd-ha', c.haBridge);
  const f = files(household);
  setText('file-key', f.key);
  setText('file-pes-key', f.pesKey);
}

/**
 * Copies the text of the element a `data-copy` button names, and says so on the button.
 * @example
 * ```ts
 * wireCopyButtons(document);
 * ```
 */
export function wireCopyButtons(root: ParentNode): void {
  for (const button of Array.from(root.querySelectorAll<HTMLButtonElement>('button[data-copy]'))) {
    button.addEventListener('click', () => {
      const text = $(button.dataset.copy!).textContent ?? '';
      const done = (ok: boolean) => {
        button.textContent = ok ? 'Copied' : 'Select and copy';
        setTimeout(() => (button.textContent = 'Copy'), 2000);
      };
      navigator.clipboard.writeText(text).then(
        () => done(true),
        () => done(false),
      );
    });
  }
}
