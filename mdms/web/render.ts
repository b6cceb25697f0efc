/**
 * Page rendering for route handlers: the layout with the signed-in user, a fresh CSRF token bound to the
 * session, and the cookie flags for this request.
 * @module
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendHtml } from './context.js';
import { html, layout, type SafeHtml } from './html.js';

/**
 * Cookie flags: Secure unless this is plain HTTP between loopback addresses (local development).
 * @example
 * ```ts
 * reply.setCookie(SESSION_COOKIE, token, cookieFlags(req));
 * ```
 */
export function cookieFlags(req: FastifyRequest): { path: string; httpOnly: boolean; sameSite: 'strict'; secure: boolean } {
  return { path: '/', httpOnly: true, sameSite: 'strict', secure: secureRequest(req) };
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
const isLoopbackAddr = (a: string | undefined): boolean => !!a && (a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.'));

/**
 * Whether cookies set in reply to this request must be `Secure`: always over HTTPS (or behind a trusted
 * TLS proxy), and over plain HTTP too unless both the Host and the peer are loopback (a developer's machine,
 * the tests, the demo).
 * @example
 * ```ts
 * reply.setCookie('x', v, { secure: secureRequest(req) });
 * ```
 */
export function secureRequest(req: FastifyRequest): boolean {
  if (req.server.mdms.secureCookies === 'always' || req.protocol === 'https') return true;
  return !(LOOPBACK_HOSTS.has(req.hostname.replace(/:\d+$/, '')) && isLoopbackAddr(req.socket.remoteAddress));
}

/**
 * A CSRF token for forms on this page, bound to the session (or to "anonymous" before login).
 * @example
 * ```ts
 * html`<input type="hidden" name="_csrf" value="${csrfToken(req, reply)}">`;
 * ```
 */
export function csrfToken(req: FastifyRequest, reply: FastifyReply, tokenHash: string | null = req.session?.tokenHash ?? null): string {
  return reply.generateCsrf({ userInfo: tokenHash ?? 'anonymous', ...cookieFlags(req) } as Parameters<FastifyReply['generateCsrf']>[0]);
}

/** Options of {@link sendPage}. */
export interface PageOptions {
  title: string;
  active?: string;
  status?: number;
  flash?: { kind: 'ok' | 'error'; text: string } | null;
}

/**
 * Renders `body` (a function of the CSRF token, for forms) in the layout and sends it.
 * @example
 * ```ts
 * return sendPage(req, reply, { title: 'Meters', active: '/meters' }, () => html`<h1>Meters</h1>`);
 * ```
 */
export async function sendPage(req: FastifyRequest, reply: FastifyReply, opts: PageOptions, body: (csrf: string) => SafeHtml): Promise<FastifyReply> {
  const settings = await req.server.mdms.web.settings.all();
  const csrf = csrfToken(req, reply);
  const page = layout(
    {
      title: opts.title,
      user: req.session?.user ?? null,
      utilityName: settings.utilityName,
      active: opts.active ?? req.url.split('?')[0],
      csrfToken: csrf,
      assets: req.server.mdms.assets,
      flash: opts.flash ?? null,
      banner: req.server.mdms.banner,
    },
    body(csrf),
  );
  return sendHtml(reply, page, opts.status ?? 200);
}

/**
 * The hidden CSRF field of a form.
 * @example
 * ```ts
 * html`<form method="post">${csrfField(csrf)}...</form>`;
 * ```
 */
export function csrfField(csrf: string): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${csrf}">`;
}

/**
 * The success message of a redirect-after-POST: `?done=<code>` names one of the page's fixed messages (never
 * free text from the URL, so a crafted link cannot put words in the app's mouth).
 * @example
 * ```ts
 * flashOf(req.query, { saved: 'Settings saved.' });
 * ```
 */
export function flashOf(q: unknown, messages: Record<string, string>): PageOptions['flash'] {
  const code = (q as { done?: unknown } | undefined)?.done;
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(messages, code) ? { kind: 'ok', text: messages[code]! } : null;
}
