// Sinks: each one's state, lag and last error, and its dead letters (events its receiver
// refused for good), which can be sent again. Sinks carry every tenant's events, so the API
// shows them to admin keys bound to no tenant only; anyone else is told so plainly.

import { api, ApiError } from './api.js';
import { h, notice, replace } from './dom.js';
import { formatCount, formatSeconds, timeElement } from './format.js';
import { dataTable } from './table.js';

export const title = 'Sinks';

export function render(main, { session }) {
  replace(main, h('div', { class: 'page-head' }, h('h1', {}, 'Sinks')));
  if (!session.scopes.includes('admin') || session.tenant_id) {
    main.append(
      notice(
        'info',
        h('strong', {}, 'Sinks are shown to admin keys only. '),
        `Sinks carry every tenant's events, so only a key with the admin scope that is bound to no tenant may see them. This key (${session.key_id}) has ${session.scopes.join(', ')}${session.tenant_id ? ` and is bound to tenant ${session.tenant_id}` : ''}.`,
      ),
    );
    return () => {};
  }
  const list = h('div', { class: 'sink-list' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(list);
  loadSinks(list);
  return () => {};
}

function sinkState(sink) {
  if (sink.circuit === 'open') return { text: 'circuit open', kind: 'bad' };
  if (sink.circuit === 'half_open') return { text: 'trying again', kind: 'warn' };
  if (sink.consecutive_failures > 0) return { text: `retrying (${sink.consecutive_failures} failed)`, kind: 'warn' };
  if (sink.lease === 'standby') return { text: 'standby', kind: 'muted' };
  if (sink.lag_events > 0) return { text: 'delivering', kind: 'ok' };
  return { text: 'caught up', kind: 'ok' };
}

async function loadSinks(list) {
  let sinks;
  try {
    sinks = await api('/v1/sinks');
  } catch (error) {
    const text =
      error instanceof ApiError && error.status === 403
        ? `This key may not see sinks: ${error.message}`
        : `The sinks could not be loaded: ${error.message}`;
    replace(list, notice('error', text));
    return;
  }
  if (!sinks.length) {
    replace(list, h('p', { class: 'empty' }, 'No sinks are configured ([[sinks]] in the server\'s configuration).'));
    return;
  }
  replace(list, sinks.map((sink) => sinkCard(sink)));
}

function sinkCard(sink) {
  const state = sinkState(sink);
  const deadLetters = h('div', { class: 'dead-letters' });
  const card = h(
    'section',
    { class: 'card sink', 'aria-labelledby': `sink-${sink.name}`, 'data-sink': sink.name },
    h(
      'div',
      { class: 'sink-head' },
      h('h2', { id: `sink-${sink.name}` }, sink.name, h('span', { class: 'muted sink-kind' }, ` ${sink.kind}`)),
      h('span', { class: ['badge', `state-${state.kind}`] }, state.text),
    ),
    h(
      'dl',
      { class: 'stats-row' },
      stat('Lag', `${formatCount(sink.lag_events)} events · ${formatSeconds(sink.lag_seconds)}`),
      stat('Cursor', `seq ${formatCount(sink.cursor)}`),
      stat('Delivered', `${formatCount(sink.delivered_events)} since start`),
      stat('Last success', timeElement(sink.last_success_at)),
      stat('Dead letters', formatCount(sink.dead_letters)),
      sink.next_attempt_at ? stat('Next attempt', timeElement(sink.next_attempt_at)) : null,
    ),
    sink.last_error
      ? h('div', { class: 'last-error' }, h('strong', {}, 'Last error '), timeElement(sink.last_error.at), h('p', { class: 'mono small' }, sink.last_error.message))
      : null,
    sink.routes.length ? h('p', { class: 'muted small' }, `Routes: ${sink.routes.join(', ')}`) : null,
    deadLetters,
  );
  if (sink.dead_letters > 0) loadDeadLetters(sink, deadLetters);
  return card;
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value));
}

async function loadDeadLetters(sink, container) {
  replace(container, h('h3', {}, 'Dead letters'), h('p', { class: 'muted' }, 'Loading…'));
  let letters;
  try {
    letters = await api(`/v1/sinks/${encodeURIComponent(sink.name)}/dead-letters`);
  } catch (error) {
    replace(container, h('h3', {}, 'Dead letters'), notice('error', `The dead letters could not be loaded: ${error.message}`));
    return;
  }
  const selected = new Set();
  const result = h('p', { class: 'replay-result', role: 'status', 'aria-live': 'polite' });
  const replaySelected = h('button', { type: 'button', class: 'button', disabled: true }, 'Replay selected');
  const replayAll = h('button', { type: 'button', class: 'button button-primary' }, `Replay all ${letters.length}`);
  const replay = async (seqs) => {
    replaySelected.disabled = replayAll.disabled = true;
    result.textContent = 'Queuing…';
    try {
      const answer = await api(`/v1/sinks/${encodeURIComponent(sink.name)}/dead-letters/replay`, { method: 'POST', body: seqs ? { seqs } : {} });
      result.textContent = `${answer.queued} dead letter${answer.queued === 1 ? '' : 's'} queued to be sent again. Accepted ones leave the list; refused ones stay with the new answer.`;
    } catch (error) {
      result.textContent = `The replay could not be queued: ${error.message}`;
    }
    replayAll.disabled = false;
    replaySelected.disabled = selected.size === 0;
  };
  replaySelected.addEventListener('click', () => replay([...selected].sort((a, b) => a - b)));
  replayAll.addEventListener('click', () => replay(null));

  const table = dataTable({
    caption: `Dead letters of ${sink.name}`,
    captionHidden: true,
    columns: [
      {
        label: 'Select',
        class: 'col-select',
        cell: (letter) => {
          const id = `dl-${sink.name}-${letter.seq}`;
          const box = h('input', { type: 'checkbox', id, value: String(letter.seq) });
          box.addEventListener('change', () => {
            if (box.checked) selected.add(letter.seq);
            else selected.delete(letter.seq);
            replaySelected.disabled = selected.size === 0;
          });
          return h('span', { class: 'check' }, box, h('label', { for: id, class: 'visually-hidden' }, `Select seq ${letter.seq}`));
        },
      },
      { label: 'Seq', cell: (l) => h('a', { href: `/console/events/${encodeURIComponent(l.event_id)}` }, String(l.seq)) },
      { label: 'Receiver said', class: 'col-wide', cell: (l) => h('span', { class: 'mono small' }, l.error) },
      { label: 'Attempts', class: 'num', cell: (l) => String(l.attempts) },
      { label: 'Since', cell: (l) => timeElement(l.created_at) },
      { label: 'Replay', cell: (l) => (l.replay_requested ? 'queued' : h('span', { class: 'muted' }, '—')) },
    ],
    rows: letters,
    empty: 'No dead letters.',
  });
  replace(
    container,
    h('h3', {}, `Dead letters (${letters.length})`),
    table.element,
    h('div', { class: 'form-actions' }, replayAll, replaySelected),
    result,
  );
}
