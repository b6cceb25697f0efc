/**
 * Tariffs: versions with any number of time-of-use band prices, a standing charge, VAT and an effective
 * date. Billing clerks read them; administrators add versions and withdraw versions not yet in effect.
 * Prices are typed as decimals of the minor unit (24.567 p/kWh) and stored as integers (thousandths).
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { IANAZone } from 'luxon';
import { effectiveStart, formatScaled, MAX_RATE_MILLI, parseScaled } from '../../../lib/billing.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html } from '../html.js';
import { csrfField, flashOf, sendPage } from '../render.js';
import { can } from '../roles.js';
import { errors, newTariffSchema, tariffSchema } from '../schemas.js';
import type { NewTariff, StoredTariff } from '../tariffs.js';
import { isoZ } from '../time.js';

const tariffJson = (t: StoredTariff) => ({ ...t, createdAt: isoZ(Math.floor(t.createdAtMs / 1000)) });

interface TariffForm {
  code?: string;
  name?: string;
  currency?: string;
  minorDigits?: string;
  tz?: string;
  effectiveFrom?: string;
  standing?: string;
  vat?: string;
  band?: string[];
  price?: string[];
  /** Feed-in price per band (aligned with `band`); empty = 0. */
  feedin?: string[];
  schedule?: string;
}

/**
 * Reads the tariff form (decimals -> integers, no floats); throws `HttpError` 400 naming the field.
 * @example
 * ```ts
 * formToTariff({ code: 'tou', price: ['24.5'], feedin: ['9'], band: ['flat'], standing: '53.35', vat: '5', ... });
 * ```
 */
export function formToTariff(f: TariffForm): NewTariff {
  const bad = (m: string): never => {
    throw new HttpError(400, m);
  };
  const minorDigits = Number(f.minorDigits ?? '2');
  if (!Number.isInteger(minorDigits) || minorDigits < 0 || minorDigits > 4) bad('minor-unit digits must be 0..4');
  const standing = parseScaled(f.standing ?? '', 3);
  if (standing === null || standing < 0) bad('standing charge must be a decimal number of minor units per day with at most 3 decimals');
  const vat = parseScaled(f.vat?.trim() ? f.vat : '0', 2, 10_000);
  if (vat === null || vat < 0) bad('VAT must be a percentage between 0 and 100 with at most 2 decimals');
  const names = f.band ?? [];
  const prices = f.price ?? [];
  const feedIns = f.feedin ?? [];
  const bands: NewTariff['bands'] = [];
  names.forEach((n, i) => {
    const name = n.trim();
    const p = (prices[i] ?? '').trim();
    const fi = (feedIns[i] ?? '').trim();
    if (!name && !p && !fi) return;
    if (!name) bad(`band ${i + 1} has a price but no name`);
    const price = parseScaled(p, 3, MAX_RATE_MILLI);
    if (price === null) bad(`price of band "${name}" must be a decimal number of minor units per kWh with at most 3 decimals`);
    const feedIn = fi ? parseScaled(fi, 3, MAX_RATE_MILLI) : 0;
    if (feedIn === null) bad(`feed-in price of band "${name}" must be a decimal number of minor units per kWh with at most 3 decimals (or empty for none)`);
    bands.push({ band: name, priceMilliPerKwh: price!, feedInMilliPerKwh: feedIn! });
  });
  if (bands.length === 0) bad('a tariff needs at least one band with a price');
  let schedule: unknown = null;
  if (f.schedule?.trim()) {
    try {
      schedule = JSON.parse(f.schedule);
    } catch {
      bad('the band schedule is not valid JSON');
    }
  }
  return {
    code: (f.code ?? '').trim(),
    name: (f.name ?? '').trim(),
    currency: (f.currency ?? '').trim().toUpperCase(),
    minorDigits,
    tz: (f.tz ?? '').trim(),
    effectiveFrom: (f.effectiveFrom ?? '').trim(),
    standingMilliPerDay: standing!,
    vatBasisPoints: vat!,
    bands,
    schedule,
  };
}

/**
 * Registers the tariff routes.
 * @example
 * ```ts
 * await app.register(tariffRoutes);
 * ```
 */
export async function tariffRoutes(app: FastifyInstance): Promise<void> {
  const { web } = app.mdms;
  const nowS = (): number => Math.floor(app.mdms.now() / 1000);

  async function create(req: FastifyRequest, t: NewTariff): Promise<StoredTariff> {
    if (!IANAZone.isValidZone(t.tz)) throw new HttpError(400, `time zone "${t.tz.slice(0, 40)}" is not an IANA zone (e.g. Europe/London)`);
    const u = userOf(req);
    const v = await web.tariffs.create(t, u.username);
    await web.audit.record({ userId: u.id, username: u.username, action: 'tariff.create', target: `${v.code}@${v.effectiveFrom}`, outcome: 'ok', ip: clientIp(req), detail: { id: v.id, bands: v.bands.length } });
    return v;
  }

  async function withdraw(req: FastifyRequest, id: number): Promise<void> {
    const u = userOf(req);
    if (!(await web.tariffs.get(id))) throw new HttpError(404, `no tariff version ${id}`);
    const v = await web.tariffs.withdraw(id);
    await web.audit.record({ userId: u.id, username: u.username, action: 'tariff.withdraw', target: `${v.code}@${v.effectiveFrom}`, outcome: 'ok', ip: clientIp(req), detail: { id } });
  }

  // ---- pages
  app.get(
    '/tariffs',
    { config: { access: 'tariff.read' }, schema: { hide: true, querystring: { type: 'object', properties: { done: { type: 'string', maxLength: 20 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const all = await web.tariffs.list();
      const settings = await web.settings.all();
      const admin = can(userOf(req).roles, 'tariff.write');
      const codes = [...new Set(all.map((t) => t.code))];
      const now = nowS();
      return sendPage(req, reply, { title: 'Tariffs', active: '/tariffs', flash: flashOf(req.query, { created: 'Tariff version added.', withdrawn: 'Tariff version withdrawn.' }) }, (csrf) => html`
<div class="head"><div><h1>Tariffs</h1><p class="sub">Each version takes effect at local midnight of its date and stays until the next version of the same tariff. Prices in thousandths of the minor unit are exact; nothing is a float.</p></div>
${admin ? html`<a class="button" href="/tariffs/new">New tariff</a>` : ''}</div>
${codes.length === 0 ? html`<div class="card"><p class="muted">No tariffs yet.${admin ? ' Add one to start billing.' : ''}</p></div>` : ''}
${codes.map((code) => {
  const versions = all.filter((t) => t.code === code);
  const current = [...versions].reverse().find((v) => effectiveStart(v) <= now);
  return html`<div class="card table-wrap" data-testid="${`tariff-${code}`}"><div class="head"><h2>${versions[versions.length - 1]!.name} <span class="muted mono">${code}</span>${settings.defaultTariff === code ? html` <span class="badge ok">default</span>` : ''}</h2>
${admin ? html`<a class="button secondary" href="${`/tariffs/new?from=${versions[versions.length - 1]!.id}`}">New version</a>` : ''}</div>
<table><thead><tr><th>Effective from</th><th>Bands (price per kWh; feed-in paid per kWh)</th><th class="num">Standing / day</th><th class="num">VAT</th><th>Status</th><th>Added</th>${admin ? html`<th></th>` : ''}</tr></thead><tbody>
${versions.map((v) => {
  const future = effectiveStart(v) > now;
  const unit = v.currency === 'GBP' ? 'p' : v.currency === 'EUR' ? 'c' : ` ${v.currency}/100`;
  return html`<tr><td>${v.effectiveFrom} <span class="muted">${v.tz}</span></td><td>${v.bands.map((b) => html`<span class="badge">${b.band} ${formatScaled(b.priceMilliPerKwh, 3)}${unit}${b.feedInMilliPerKwh ? ` · feed-in ${formatScaled(b.feedInMilliPerKwh, 3)}${unit}` : ''}</span> `)}</td>
<td class="num">${formatScaled(v.standingMilliPerDay, 3)}${unit}</td><td class="num">${formatScaled(v.vatBasisPoints, 2)}%</td>
<td>${future ? html`<span class="badge rev">scheduled</span>` : v === current ? html`<span class="badge ok">in effect</span>` : html`<span class="badge">superseded</span>`}</td>
<td class="muted">${v.createdBy}</td>
${admin ? html`<td>${future ? html`<form method="post" action="${`/tariffs/${v.id}/withdraw`}" class="inline" data-confirm="Withdraw this scheduled version?">${csrfField(csrf)}<button class="link" type="submit">Withdraw</button></form>` : ''}</td>` : ''}</tr>`;
})}
</tbody></table></div>`;
})}`);
    },
  );

  const formPage = (req: FastifyRequest, reply: FastifyReply, f: TariffForm, error?: string, status = 200) => {
    const rows = Math.max(4, (f.band ?? []).length + 1);
    const band = (i: number) => f.band?.[i] ?? '';
    const price = (i: number) => f.price?.[i] ?? '';
    const feedin = (i: number) => f.feedin?.[i] ?? '';
    return sendPage(req, reply, { title: 'New tariff', active: '/tariffs', status, flash: error ? { kind: 'error', text: error } : null }, (csrf) => html`
<h1>New tariff version</h1>
<p class="sub">Band names must match the bands the PES splits energy into (its tariff file). To change prices, add a version of the same code with a later date.</p>
<form method="post" action="/tariffs" class="card" data-testid="tariff-form">${csrfField(csrf)}
<div class="grid">
  <label>Code <input name="code" required pattern="[a-z0-9][a-z0-9_\\-]{0,31}" value="${f.code ?? ''}" placeholder="tou"></label>
  <label>Name <input name="name" required maxlength="80" value="${f.name ?? ''}" placeholder="Time of use"></label>
  <label>Effective from <input type="date" name="effectiveFrom" required value="${f.effectiveFrom ?? ''}"></label>
  <label>Time zone <input name="tz" required value="${f.tz ?? 'Europe/London'}"></label>
  <label>Currency <input name="currency" required pattern="[A-Za-z]{3}" value="${f.currency ?? 'GBP'}"></label>
  <label>Minor-unit digits <input name="minorDigits" type="number" min="0" max="4" value="${f.minorDigits ?? '2'}"></label>
  <label>Standing charge (minor units / day) <input name="standing" required inputmode="decimal" value="${f.standing ?? ''}" placeholder="53.35"></label>
  <label>VAT (%) <input name="vat" inputmode="decimal" value="${f.vat ?? '0'}" placeholder="5"></label>
</div>
<fieldset><legend>Bands, unit rates and feed-in rates (minor units per kWh, up to 3 decimals; feed-in is paid for energy exported in the band, empty = 0)</legend>
${Array.from({ length: rows }, (_, i) => html`<div class="row band-row"><label>Band <input name="band" value="${band(i)}" placeholder="${i === 0 ? 'peak' : i === 1 ? 'offpeak' : ''}"></label><label>Price <input name="price" inputmode="decimal" value="${price(i)}" placeholder="${i === 0 ? '30.5' : ''}"></label><label>Feed-in <input name="feedin" inputmode="decimal" value="${feedin(i)}" placeholder="${i === 0 ? '9' : ''}"></label></div>`)}
<button type="button" class="secondary spaced" data-action="add-band">Add a band</button>
</fieldset>
<label class="spaced">Band schedule (optional; the PES tariff file, shown on bills) <textarea name="schedule" rows="5" placeholder='{"tz":"Europe/London","bands":[{"name":"peak","rules":[{"days":[1,2,3,4,5],"from":"07:00","to":"23:00"}]},{"name":"offpeak","default":true}]}'>${f.schedule ?? ''}</textarea></label>
<div class="spaced"><button type="submit">Add version</button> <a href="/tariffs">Cancel</a></div>
</form>`);
  };

  app.get(
    '/tariffs/new',
    { config: { access: 'tariff.write' }, schema: { hide: true, querystring: { type: 'object', properties: { from: { type: 'integer', minimum: 1 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const id = (req.query as { from?: number }).from;
      if (id === undefined) return formPage(req, reply, {});
      const t = await web.tariffs.get(id);
      if (!t) throw new HttpError(404, `no tariff version ${id}`);
      return formPage(req, reply, {
        code: t.code,
        name: t.name,
        currency: t.currency,
        minorDigits: String(t.minorDigits),
        tz: t.tz,
        standing: formatScaled(t.standingMilliPerDay, 3),
        vat: formatScaled(t.vatBasisPoints, 2),
        band: t.bands.map((b) => b.band),
        price: t.bands.map((b) => formatScaled(b.priceMilliPerKwh, 3)),
        feedin: t.bands.map((b) => formatScaled(b.feedInMilliPerKwh ?? 0, 3)),
        schedule: t.schedule ? JSON.stringify(t.schedule) : '',
      });
    },
  );

  const strs = { type: 'array', items: { type: 'string', maxLength: 40 }, maxItems: 64 } as const;
  app.post(
    '/tariffs',
    {
      config: { access: 'tariff.write' },
      schema: {
        hide: true,
        body: {
          type: 'object',
          properties: {
            code: { type: 'string', maxLength: 40 },
            name: { type: 'string', maxLength: 100 },
            currency: { type: 'string', maxLength: 8 },
            minorDigits: { type: 'string', maxLength: 2 },
            tz: { type: 'string', maxLength: 64 },
            effectiveFrom: { type: 'string', maxLength: 10 },
            standing: { type: 'string', maxLength: 20 },
            vat: { type: 'string', maxLength: 10 },
            band: strs,
            price: strs,
            feedin: strs,
            schedule: { type: 'string', maxLength: 8000 },
            _csrf: { type: 'string' },
          },
          required: ['code', 'name', 'currency', 'tz', 'effectiveFrom', 'standing'],
        },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const f = req.body as TariffForm;
      try {
        await create(req, formToTariff(f));
      } catch (e) {
        const status = (e as { statusCode?: number }).statusCode ?? (e instanceof Error && e.name === 'BillingError' ? 422 : 500);
        if (status >= 500) throw e;
        return formPage(req, reply, f, (e as Error).message, status);
      }
      return reply.redirect('/tariffs?done=created', 303);
    },
  );

  app.post(
    '/tariffs/:id/withdraw',
    {
      config: { access: 'tariff.write' },
      schema: { hide: true, params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] }, body: { type: 'object', properties: { _csrf: { type: 'string' } } }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      await withdraw(req, (req.params as { id: number }).id);
      return reply.redirect('/tariffs?done=withdrawn', 303);
    },
  );

  // ---- API
  const tags = ['tariffs'];
  app.get(
    '/api/v1/tariffs',
    { config: { access: 'tariff.read' }, schema: { tags, summary: 'Tariff versions', description: 'Ordered by code, then effective date. Needs tariff.read (admin, billing).', response: { 200: { type: 'array', items: tariffSchema }, ...errors } } },
    async () => (await web.tariffs.list()).map(tariffJson),
  );

  app.post(
    '/api/v1/tariffs',
    {
      config: { access: 'tariff.write' },
      schema: {
        tags,
        summary: 'Add a tariff version',
        description:
          'Prices are integers: priceMilliPerKwh, feedInMilliPerKwh (paid per kWh fed in, default 0) and standingMilliPerDay in thousandths of the minor unit, vatBasisPoints in 1/100 %. 422 when it clashes with the code’s versions or the schedule does not match the bands. Audited. Needs tariff.write (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        body: newTariffSchema,
        response: { 201: tariffSchema, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body as NewTariff;
      const v = await create(req, { ...b, minorDigits: b.minorDigits ?? 2, vatBasisPoints: b.vatBasisPoints ?? 0 });
      return reply.code(201).send(tariffJson(v));
    },
  );

  app.delete(
    '/api/v1/tariffs/:id',
    {
      config: { access: 'tariff.write' },
      schema: {
        tags,
        summary: 'Withdraw a scheduled tariff version',
        description: 'Only before it takes effect (422 afterwards). Audited. Needs tariff.write (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] },
        response: { 204: { type: 'null' }, ...errors },
      },
    },
    async (req, reply) => {
      await withdraw(req, (req.params as { id: number }).id);
      return reply.code(204).send();
    },
  );
}
