// The console's shell: who is signed in, sign out, and which page this URL is. Links between
// pages are ordinary full loads, so every view is its URL and a reload shows it again.

import { ApiError, deleteSession, getSession } from './api.js';
import { h, notice, replace } from './dom.js';

/** [path pattern, nav item, page module] — each module exports render(main, context) and title. */
const ROUTES = [
  [/^\/console\/?$/, 'overview', () => import('./overview.js')],
  [/^\/console\/events\/?$/, 'events', () => import('./events.js')],
  [/^\/console\/events\/([^/]+)\/?$/, 'events', () => import('./event.js')],
  [/^\/console\/sinks\/?$/, 'sinks', () => import('./sinks.js')],
  [/^\/console\/access\/?$/, 'access', () => import('./access.js')],
];

function route(pathname) {
  for (const [pattern, nav, load] of ROUTES) {
    const match = pattern.exec(pathname);
    if (match) return { nav, load, params: match.slice(1) };
  }
  return null;
}

function showSession(session) {
  const who = document.getElementById('session-who');
  const scope = session.tenant_id ? `tenant ${session.tenant_id}` : 'all tenants';
  replace(
    who,
    h('span', { class: 'session-key' }, 'Key ', h('code', {}, session.key_id)),
    h('span', { class: 'session-scope' }, ` · ${scope} · ${session.scopes.join(', ')}`),
  );
  who.title = `Signed in until ${new Date(session.expires_at).toLocaleString()}`;
}

function wireSignOut() {
  const button = document.getElementById('sign-out');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await deleteSession();
    } catch (error) {
      // Already gone (401) is signed out too; anything else is worth saying.
      if (!(error instanceof ApiError && error.status === 401)) {
        button.disabled = false;
        alertInMain(`Signing out failed: ${error.message}`);
        return;
      }
    }
    location.assign('/console/login');
  });
}

function alertInMain(text) {
  document.getElementById('main').prepend(notice('error', text));
}

function markNav(nav) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function start() {
  const main = document.getElementById('main');
  wireSignOut();
  let session;
  try {
    session = await getSession();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // api() went to sign in
    replace(main, notice('error', `The console could not reach the server: ${error.message}`));
    return;
  }
  showSession(session);
  const found = route(location.pathname);
  if (!found) {
    document.title = 'Not found · Sealtrail';
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No console page lives here. ', h('a', { href: '/console/' }, 'Go to the overview.')));
    return;
  }
  markNav(found.nav);
  const page = await found.load();
  document.title = `${page.title} · Sealtrail`;
  page.render(main, { session, params: found.params });
}

start();
