/**
 * The few DOM helpers every part of the page uses: elements by id (a missing one is a bug, thrown at once),
 * text, and energy or money that may be missing ("no data", never 0).
 * @module
 */
import { formatKwh } from './series.js';

/**
 * The element with this id.
 * @example
 * ```ts
 * $('notice').hidden = false;
 * ```
 */
export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

/**
 * The input element with this id.
 * @example
 * ```ts
 * input('login-password').value = '';
 * ```
 */
export const input = (id: string) => $<HTMLInputElement>(id);

/**
 * Sets an element's text.
 * @example
 * ```ts
 * setText('who', 'Household hh1');
 * ```
 */
export const setText = (id: string, text: string) => {
  $(id).textContent = text;
};

/**
 * Sets the text of several elements at once (after every figure of a view is computed).
 * @example
 * ```ts
 * setTexts({ 'today-total': '1.234', 'today-export': 'no data' });
 * ```
 */
export const setTexts = (texts: Record<string, string>) => {
  for (const [id, text] of Object.entries(texts)) setText(id, text);
};

/** What the page shows where a span has no readings. */
export const NO_DATA = 'no data';

/**
 * kWh text of integer Wh, or "no data".
 * @example
 * ```ts
 * kwhOrNone(null); // 'no data'
 * ```
 */
export const kwhOrNone = (wh: number | null | undefined) => (wh === null || wh === undefined ? NO_DATA : formatKwh(wh));

/**
 * A change in percent with its sign, or "—" when there is nothing to compare with.
 * @example
 * ```ts
 * pct(-16.7); // '-16.7 %'
 * ```
 */
export const pct = (p: number | null) => (p === null ? '—' : `${p > 0 ? '+' : ''}${p} %`);

/**
 * Replaces the rows of a table body with cells of text.
 * @example
 * ```ts
 * fillTable('history-rows', [['Mon 1 Dec', '1.234']]);
 * ```
 */
export function fillTable(id: string, rows: readonly (readonly string[])[]): void {
  const body = $(id);
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.append(td);
      }
      return tr;
    }),
  );
}
