// The sign-in form: trades the API key for a session cookie, then goes where the reader
// was heading (only ever a console page: `next` must not send anyone off-site).

import { api, ApiError } from './api.js';

const CONSOLE_PREFIX = '/console/';

/** The `next` parameter when it is a console page, else the overview. */
function destination(search) {
  const next = new URLSearchParams(search).get('next');
  // "/console/" as a prefix also rules out "//host" and "https://…".
  if (next && next.startsWith(CONSOLE_PREFIX) && !next.startsWith(`${CONSOLE_PREFIX}login`)) return next;
  return CONSOLE_PREFIX;
}

function explain(error) {
  if (!(error instanceof ApiError)) return `Signing in failed: ${error?.message ?? error}`;
  if (error.status === 0) return 'The server could not be reached. Try again in a moment.';
  if (error.status === 401) return 'No API key matches. Check the key (it starts with st_) and try again.';
  if (error.status === 403) return `This key cannot sign in to the console: ${error.message}`;
  return `Signing in failed: ${error.message}`;
}

function start() {
  const form = document.getElementById('login-form');
  const input = document.getElementById('api-key');
  const errorBox = document.getElementById('login-error');
  const button = form.querySelector('button[type="submit"]');
  input.focus();

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const apiKey = input.value.trim();
    errorBox.textContent = '';
    input.removeAttribute('aria-invalid');
    if (!apiKey) {
      errorBox.textContent = 'Enter an API key.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      await api('/console/session', { method: 'POST', body: { api_key: apiKey }, redirectOn401: false });
      location.assign(destination(location.search));
    } catch (error) {
      errorBox.textContent = explain(error);
      input.setAttribute('aria-invalid', 'true');
      input.select();
      input.focus();
      button.disabled = false;
      button.textContent = 'Sign in';
    }
  });
}

start();
