// The managers' dashboard: tiles, charts and the conversion table, for one project or all the
// caller may see, between two dates; every figure exports, the whole as the API's CSV/XLSX.
import { h, mount, field, select, download, fmtNum, csvText } from './dom.js';
import { get, blob, missingRoute } from './api.js';
import { t } from './i18n.js';
import { attempt, go } from './app.js';
import { barChart, donutChart, series, intervalBar } from './charts.js';

export async function statsPage(main) {
  const params = new URLSearchParams(location.search);
  const projectId = params.get('project_id') || '';
  const from = params.get('from') || '';
  const to = params.get('to') || '';
  const projects = await get('/projects?limit=500');
  const q = new URLSearchParams();
  if (projectId) q.set('project_id', projectId);
  if (from) q.set('from', from);
  if (to) q.set('to', to);

  const project = select('project_id', [['', t('All projects')], ...projects.items.map((p) => [p.id, p.name])], projectId);
  const fromInput = h('input', { type: 'date', name: 'from', value: from });
  const toInput = h('input', { type: 'date', name: 'to', value: to });
  const filters = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (project.value) p.set('project_id', project.value);
    if (fromInput.value) p.set('from', fromInput.value);
    if (toInput.value) p.set('to', toInput.value);
    go(`/statistics?${p}`, true);
  } }, field(t('Projects'), project), field(t('From'), fromInput), field(t('To'), toInput), h('button', { type: 'submit' }, t('Apply')));
  project.addEventListener('change', () => filters.requestSubmit());

  let s;
  try {
    s = await get(`/statistics?${q}`);
  } catch (err) {
    const text = missingRoute(err) ? t('Not available in this build')
      : err.status === 403 ? `${t('You do not have the right to do this')}: ${err.message}` : err.message;
    mount(main, h('h1', {}, t('Statistics')), filters,
      h('p', { class: 'card error', role: missingRoute(err) ? 'status' : 'alert' }, text));
    return;
  }
  const fileExport = (format) => h('button', { type: 'button', onclick: async () => {
    const b = await attempt(() => blob(`/statistics?${q}${q.size ? '&' : ''}format=${format}`));
    if (b) download(`statistics.${format}`, b);
  } }, format === 'csv' ? t('Export CSV') : t('Export XLSX'));

  const outcomes = series(s.requests_by_outcome);
  const sold = outcomes.find((o) => o.label === 'sold')?.value ?? 0;
  const totals = s.totals || {};
  const conv = s.conversion || [];
  const tile = (label, value, key) => h('div', { class: 'tile', 'data-tile': key }, h('span', { class: 'value' }, value), h('span', { class: 'label' }, label));
  const pct = (v) => (v === null || v === undefined ? '—' : `${fmtNum(v * 100, 1)}%`);
  const convRows = conv.map((c) => [c.channel, c.cluster ?? '', c.prompt_version ?? '', c.requests, c.sold, c.interest, c.negative, c.sold_rate, c.ci_low, c.ci_high]);
  // Ratings come per channel and prompt version; the donut shows them all together.
  const ratingTotals = { ok: 0, revision: 0, error: 0, unrated: 0 };
  for (const r of Array.isArray(s.ratings) ? s.ratings : []) for (const k of Object.keys(ratingTotals)) ratingTotals[k] += r[k] || 0;
  const ratingLabels = { ok: 'Good', revision: 'Needs work', error: 'Bad', unrated: 'undefined' };
  const ratings = Object.entries(ratingTotals).map(([k, value]) => ({ label: ratingLabels[k], value }));
  const days = Array.isArray(s.generation) ? s.generation : [];
  const generated = days.reduce((n, d) => n + (d.generated || 0), 0);
  const failures = days.reduce((n, d) => n + (d.permanent_failures || 0), 0);
  // The newest day's median: what generation costs now.
  const latest = [...days].filter((d) => typeof d.median_latency_ms === 'number').sort((a, b) => String(a.day).localeCompare(String(b.day))).pop();

  mount(main,
    h('div', { class: 'head' }, h('h1', {}, t('Statistics')), h('div', { class: 'row' }, fileExport('csv'), fileExport('xlsx'))),
    filters,
    h('div', { class: 'tiles' },
      tile(t('Members'), fmtNum(totals.members), 'members'), tile(t('Channels'), fmtNum(totals.channels), 'channels'),
      tile(t('Requests'), fmtNum(totals.requests), 'requests'), tile(t('Sold'), fmtNum(sold), 'sold'),
      tile(t('Sold rate'), totals.requests ? pct(sold / totals.requests) : '—', 'sold-rate'),
      tile(t('Offers generated'), fmtNum(generated), 'generated'), tile(t('Failed for good'), fmtNum(failures), 'failed'),
      tile(t('Median generation time, ms'), latest ? fmtNum(latest.median_latency_ms) : '—', 'latency')),
    h('div', { class: 'charts' },
      donutChart(t('Requests by outcome'), outcomes, { translate: true }),
      barChart(t('Requests by channel'), series(s.requests_by_channel)),
      barChart(t('Requests by product'), series(s.requests_by_product)),
      barChart(t('Sales by product'), series(s.successes_by_product)),
      s.channel_popularity ? barChart(t('Channels'), series(s.channel_popularity)) : null,
      donutChart(t('Ratings'), ratings, { translate: true }),
      days.length ? barChart(t('Offers generated per day'), days.map((d) => ({ label: d.day, value: d.generated || 0 }))) : null),
    h('section', { class: 'card' },
      h('div', { class: 'head' }, h('h2', {}, t('Conversion')),
        h('button', { type: 'button', class: 'small', onclick: () => download('conversion.csv', new Blob([csvText([
          ['channel', 'cluster', 'prompt_version', 'requests', 'sold', 'interest', 'negative', 'sold_rate', 'ci_low', 'ci_high'], ...convRows])], { type: 'text/csv' })) }, 'CSV')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'conversion', 'data-test': 'conversion' },
        h('thead', {}, h('tr', {}, [t('Channel'), t('Cluster'), t('Prompt version'), t('Requests'), t('Sold'), t('Interest'), t('Negative'), t('Sold rate'), t('95% interval')]
          .map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, conv.length ? conv.map((c) => h('tr', {},
          h('td', {}, c.channel), h('td', {}, c.cluster ?? '—'), h('td', { class: 'num' }, c.prompt_version ?? '—'),
          h('td', { class: 'num' }, fmtNum(c.requests)), h('td', { class: 'num' }, fmtNum(c.sold)), h('td', { class: 'num' }, fmtNum(c.interest)),
          h('td', { class: 'num' }, fmtNum(c.negative)), h('td', { class: 'num' }, pct(c.sold_rate)),
          h('td', {}, intervalBar(c.sold_rate, c.ci_low, c.ci_high), ` ${pct(c.ci_low)}–${pct(c.ci_high)}`)))
          : h('tr', {}, h('td', { colspan: 9, class: 'muted' }, t('Nothing here yet'))))))));
}
