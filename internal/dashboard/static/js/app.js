// The dashboard's shell: sign-in, the session (admin or tenant key), the
// navigation and the hash router (#/tasks, #/tasks/<id>, #/new/<type>,
// #/workflows, #/workflows/<id>, #/monitoring). Each view renders into
// <main> and returns a cleanup function that closes its streams.

import {get, getKey, setKey, clearKey, ApiError} from './api.js';
import {h, replace, notice} from './dom.js';
import {renderTaskList} from './tasks.js';
import {renderTask} from './task.js';
import {renderCreate} from './form.js';
import {renderWorkflowList, renderWorkflow} from './workflows.js';
import {renderMonitoring} from './monitoring.js';
import {session, setLive} from './session.js';

const main = document.getElementById('main');
let cleanup = null;
// signingIn is set while a key is tried: its refusal is the form's to show.
let signingIn = false;

async function loadSession() {
  const types = await get('/api/v1/task-types');
  session.types = types.types || [];
  try {
    await get('/api/v1/monitoring/workers');
    session.admin = true;
    session.tenant = '';
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
    session.admin = false;
    const t = await get('/api/v1/monitoring/tenants').catch(() => ({tenants: []}));
    session.tenant = (t.tenants && t.tenants[0] && t.tenants[0].tenant_id) || '';
  }
  document.getElementById('who').textContent = session.admin ? 'admin key' : `tenant key${session.tenant ? ' · ' + session.tenant : ''}`;
}

function signedIn(yes) {
  document.getElementById('nav').hidden = !yes;
  document.getElementById('session').hidden = !yes;
}

function renderSignIn(message) {
  signedIn(false);
  const input = h('input', {type: 'password', id: 'apikey', name: 'apikey', autocomplete: 'off', placeholder: 'csk_…', required: true, spellcheck: 'false'});
  const error = h('div', {id: 'signin-error'});
  if (message) replace(error, notice('error', message));
  const button = h('button', {type: 'submit', id: 'signin-submit'}, 'Sign in');
  const form = h('form', {class: 'card signin', id: 'signin', novalidate: true},
    h('h1', {}, 'Sign in'),
    h('p', {class: 'muted'}, 'Paste an API key. It is kept in this browser tab only (sessionStorage) and sent in the Authorization header, never in a URL. A tenant key sees its tenant’s tasks; an admin key sees everything.'),
    h('label', {for: 'apikey'}, 'API key'), input, error, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) {
      replace(error, notice('error', 'Enter an API key.'));
      return;
    }
    button.disabled = true;
    setKey(key);
    signingIn = true;
    try {
      await loadSession();
      signedIn(true);
      if (!location.hash || location.hash === '#/' || location.hash === '#') location.hash = '#/tasks';
      else route();
    } catch (err) {
      clearKey();
      replace(error, notice('error', err instanceof ApiError && err.status === 401 ? 'This API key is not valid (or was revoked).' : `Cannot sign in: ${err.message}`));
    } finally {
      signingIn = false;
      button.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}

// parseHash splits "#/tasks/abc?status=failed" into parts and a query.
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q] = raw.split('?', 2);
  return {parts: p.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q || '')};
}

const views = {
  tasks: (root, parts, query) => (parts[1] ? renderTask(root, parts[1]) : renderTaskList(root, query)),
  new: (root, parts) => renderCreate(root, parts[1] || ''),
  workflows: (root, parts, query) => (parts[1] ? renderWorkflow(root, parts[1]) : renderWorkflowList(root, query)),
  monitoring: (root) => renderMonitoring(root),
};

function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  setLive('idle');
  if (!getKey()) {
    renderSignIn();
    return;
  }
  const {parts, query} = parseHash();
  const name = parts[0] || 'tasks';
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === name);
  const view = views[name];
  const root = h('div', {class: 'view', id: 'view-' + name});
  replace(main, root);
  if (!view) {
    root.append(notice('error', 'No such page. ', h('a', {href: '#/tasks'}, 'Go to the tasks.')));
    return;
  }
  cleanup = view(root, parts, query) || null;
}

async function start() {
  document.getElementById('signout').addEventListener('click', () => {
    clearKey();
    location.hash = '#/';
    route();
  });
  window.addEventListener('compute:unauthorized', () => {
    if (!getKey() || signingIn) return;
    clearKey();
    if (cleanup) cleanup();
    cleanup = null;
    renderSignIn('The server refused the key (revoked or invalid). Sign in again.');
  });
  window.addEventListener('hashchange', route);
  if (getKey()) {
    try {
      await loadSession();
      signedIn(true);
    } catch (err) {
      if (!getKey()) return; // refused: the sign-in form is shown
      replace(main, notice('error', `Cannot reach the API: ${err.message}`));
      return;
    }
  }
  route();
}

start();
