// One client request: features, the conversation with the model, ratings, follow-ups, outcome
// and the request's history with a view of its state at any recorded moment.
import { h, mount, field, select, fmtDate } from './dom.js';
import { get, post, put, missingRoute } from './api.js';
import { t, ratingName } from './i18n.js';
import { app, attempt, render } from './app.js';
import { OUTCOMES } from './channel.js';

function flagText(flag) {
  const [kind, detail] = flag.split(/:(.*)/s);
  const names = { too_long: 'Too long for the channel', banned_phrase: 'Banned phrase', cut_at_max_tokens: 'Cut at the token limit', boilerplate_removed: 'Boilerplate removed' };
  return `${t(names[kind] || kind)}${detail ? `: ${detail}` : ''}`;
}

// What happened, in the marketer's words; the event's name stays in the tooltip.
const EVENTS = {
  ClientRequestCreated: 'Client added', GenerationRequested: 'Offer requested', MessageGenerated: 'Offer written',
  GenerationFailed: 'Generation failed', GenerationRequeued: 'Generation requeued', MessageRated: 'Offer rated',
  OutcomeRecorded: 'Outcome recorded', MessageReviewed: 'Reviewed in Argilla',
};

export async function requestPage(main, id) {
  const asOf = new URLSearchParams(location.search).get('as_of');
  const r = await get(`/requests/${id}${asOf ? `?as_of=${encodeURIComponent(asOf)}` : ''}`);
  const [project, channel] = await Promise.all([
    get(`/projects/${r.project_id}`), get(`/projects/${r.project_id}/channels/${r.channel_id}`).catch(() => null)]);
  const historyBox = h('section', { class: 'card history' }, h('h2', {}, t('History')), h('p', { class: 'muted' }, t('Loading…')));
  const readOnly = !!asOf;

  const features = h('div', { class: 'table-wrap' }, h('table', { class: 'small features' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, t('Key')), h('th', { scope: 'col' }, t('Description')), h('th', { scope: 'col' }, ''))),
    h('tbody', {}, (r.columns || []).map((c) => h('tr', {}, h('th', { scope: 'row' }, c.key), h('td', {}, c.description || ''),
      h('td', { class: 'num' }, typeof c.value === 'object' ? JSON.stringify(c.value) : String(c.value ?? '')))))));

  const messages = r.messages || [];
  const offers = messages.filter((m) => m.message_type !== 'user');
  const conversation = h('ol', { class: 'conversation', 'data-test': 'conversation' }, messages.map((m) => {
    const offer = m.message_type !== 'user';
    return h('li', { class: `msg ${offer ? 'offer' : 'prompt'}`, 'data-message': m.id, 'data-rating': m.status },
      h('p', { class: 'meta' }, offer ? t('offer') : (m.parent_id ? t('instruction') : t('prompt')), ' · ', fmtDate(m.created_at),
        m.prompt_version ? ` · ${t('version')} ${m.prompt_version}` : '', m.model ? ` · ${m.model}` : '',
        m.duration_ms ? ` · ${m.duration_ms} ms` : ''),
      h('div', { class: 'text' }, m.text),
      (m.flags || []).length ? h('ul', { class: 'flags' }, m.flags.map((f) => h('li', { class: 'flag' }, flagText(f)))) : null,
      offer && !readOnly ? rating(m) : offer && m.status !== 'undefined' ? h('p', {}, `${t('Rating')}: ${ratingName(m.status)}`) : null);
  }));

  const latest = offers[offers.length - 1];
  const instruction = h('textarea', { name: 'instruction', rows: 3, required: true });
  const followUp = latest && !readOnly ? h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    if (await attempt(() => post(`/requests/${id}/generations`, { instruction: instruction.value, parent_message_id: latest.id }), t('Queued'))) render();
  } }, field(t('Follow-up instruction'), instruction), h('button', { type: 'submit', class: 'primary' }, t('Send'))) : null;
  const regenerate = !readOnly ? h('button', { type: 'button', 'data-test': 'regenerate', onclick: async () => {
    if (await attempt(() => post(`/requests/${id}/generations`, {}), t('Queued'))) render();
  } }, latest ? t('Regenerate') : t('Generate')) : null;
  const outcome = select('success_type', OUTCOMES.map((o) => [o, t(o)]), r.success_type, { disabled: readOnly, onchange: async (e) => {
    if (!(await attempt(() => put(`/requests/${id}/outcome`, { success_type: e.target.value }), t('Saved')))) e.target.value = r.success_type;
  } });

  mount(main,
    h('p', { class: 'crumbs' }, h('a', { href: '/projects' }, t('Projects')), ' / ', h('a', { href: `/projects/${project.id}` }, project.name), ' / ',
      channel ? h('a', { href: `/projects/${project.id}/channels/${r.channel_id}` }, channel.name) : '', ' /'),
    readOnly ? h('p', { class: 'banner', role: 'status' }, `${t('State at this moment')}: ${fmtDate(asOf)} `,
      h('a', { href: `/requests/${id}` }, t('Back to now'))) : null,
    h('div', { class: 'head' }, h('h1', {}, `${t('Client')} ${r.client_id || r.id.slice(0, 8)}`),
      h('span', { class: `status ${r.status}`, 'data-test': 'request-status' }, t(r.status))),
    h('div', { class: 'row' }, field(t('Outcome'), outcome), regenerate),
    r.status_reason ? h('p', { class: 'error' }, r.status_reason) : null,
    h('div', { class: 'two' },
      h('section', { class: 'card' }, h('h2', {}, t('Conversation')), messages.length ? conversation : h('p', { class: 'muted' }, t('No offer yet')), followUp),
      h('section', { class: 'card' }, h('h2', {}, t('Features')), features)),
    historyBox);

  // While the worker is on it, look again until the answer lands.
  if (r.status === 'in_progress' && !readOnly) {
    const timer = setInterval(async () => {
      const now = await get(`/requests/${id}`).catch(() => null);
      if (now && (now.status !== r.status || (now.messages || []).length !== messages.length)) { clearInterval(timer); render(); }
    }, 1500);
    app.cleanup.push(() => clearInterval(timer));
  }
  history(historyBox, id);
}

function rating(m) {
  const comment = h('input', { name: 'comment', value: m.comment || '', 'aria-label': t('Comment'), placeholder: t('Comment') });
  const choose = (status, label) => h('button', { type: 'button', class: m.status === status ? 'chosen' : '', 'aria-pressed': m.status === status ? 'true' : 'false',
    'data-rate': status, onclick: async () => {
      if (await attempt(() => put(`/messages/${m.id}/rating`, { status, comment: comment.value || null }), t('Saved'))) render();
    } }, label);
  return h('div', { class: 'rate row', role: 'group', 'aria-label': t('Rate') },
    choose('ok', t('Good')), choose('revision', t('Needs work')), choose('error', t('Bad')), comment);
}

async function history(box, id) {
  let list;
  try {
    list = await get(`/requests/${id}/history?limit=200`);
  } catch (err) {
    mount(box, h('h2', {}, t('History')), h('p', { class: 'muted' }, missingRoute(err) || err.status === 404 ? t('Not available in this build') : err.message));
    return;
  }
  mount(box, h('h2', {}, t('History')), h('ol', { class: 'timeline' }, (list.items || []).map((e) => h('li', {},
    h('p', {}, h('strong', { title: e.event_type }, t(EVENTS[e.event_type] || e.event_type)), ' · ', fmtDate(e.recorded_at), ' · ', e.actor?.name || e.actor?.id || ''),
    h('a', { href: `/requests/${id}?as_of=${encodeURIComponent(e.recorded_at)}` }, t('State at this moment'))))));

}
