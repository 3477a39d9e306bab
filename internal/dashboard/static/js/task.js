// A task's page: status, progress bar, errors, artifacts, the event
// timeline and the webhook deliveries, kept live by the task's own event
// stream (replayed from its creation, resumed with Last-Event-ID), with
// cancel, retry and redeliver buttons.

import {get, post, EventStream} from './api.js';
import {h, replace, badge, progressBar, setProgress, when, notice, seconds, debounce, TERMINAL} from './dom.js';
import {setLive} from './session.js';
import {Previews} from './media.js';

// DETAILS are the base fields shown in the details grid, in order.
const DETAILS = [
  ['provider_type', 'Provider'], ['executor_type', 'Executor'], ['executor_instance', 'Instance'], ['queue_name', 'Queue'],
  ['priority', 'Priority'], ['origin_tenant_id', 'Tenant'], ['entity_id', 'Entity'], ['retry_count', 'Retries'],
  ['max_attempts', 'Max attempts'], ['resume_attempt_count', 'Resumes'], ['timeout_seconds', 'Timeout (s)'],
  ['service_task_id', 'Service task id'], ['created_at', 'Created'], ['run_at', 'Run at'], ['started_at', 'Started'],
  ['completed_at', 'Finished'], ['webhook_url', 'Webhook URL'],
];
const TIMES = new Set(['created_at', 'run_at', 'started_at', 'completed_at']);

function section(title, id, ...content) {
  return h('section', {class: 'card', id}, h('h2', {}, title), content);
}

function deliveriesTable(deliveries, onRedeliver) {
  if (!deliveries.length) return h('p', {class: 'muted'}, 'No webhook deliveries: the task has no webhook_url and no endpoint matches it.');
  const rows = deliveries.map((d) => {
    const btn = h('button', {type: 'button', class: 'secondary small redeliver', dataset: {deliveryId: d.id}}, 'Redeliver');
    btn.addEventListener('click', () => onRedeliver(d, btn));
    const attempts = (d.attempts || []).map((a) => h('li', {},
      `#${a.attempt} `, when(a.started_at), ` · ${a.status_code ?? 'no answer'} · ${Math.round(a.duration_ms)} ms`,
      a.error ? h('div', {class: 'err'}, a.error) : null,
      a.response_snippet ? h('pre', {class: 'snippet'}, a.response_snippet) : null));
    return h('tr', {class: 'delivery', dataset: {deliveryId: d.id, status: d.status}},
      h('td', {}, String(d.id)),
      h('td', {}, h('code', {}, d.event_type), ' ', badge(d.event_status)),
      h('td', {class: 'url', title: d.url}, d.endpoint_id ? 'endpoint ' + d.endpoint_id.slice(0, 8) : d.url),
      h('td', {}, h('span', {class: 'dstatus d-' + d.status}, d.status)),
      h('td', {}, String(d.attempt_count), attempts.length ? h('details', {}, h('summary', {}, 'attempts'), h('ol', {class: 'attempts'}, attempts)) : null),
      h('td', {}, d.last_status_code ? String(d.last_status_code) : (d.last_error ? h('span', {class: 'err', title: d.last_error}, 'error') : '—')),
      h('td', {}, when(d.delivered_at || d.updated_at)),
      h('td', {}, btn));
  });
  return h('div', {class: 'table-wrap'}, h('table', {class: 'deliveries'},
    h('thead', {}, h('tr', {}, ['Id', 'Event', 'To', 'Status', 'Attempts', 'Last code', 'When', ''].map((c) => h('th', {}, c)))),
    h('tbody', {}, rows)));
}

function timelineItem(ev) {
  const b = ev.data || {};
  const stage = b.metadata && b.metadata.stage;
  const progress = ev.event.endsWith('_progress_update');
  return h('li', {class: 'ev' + (progress ? ' ev-progress' : ' ev-status'), dataset: {eventId: ev.id, status: b.status || ''}},
    h('span', {class: 'ev-time'}, b.timestamp ? new Date(b.timestamp).toLocaleTimeString() : ''),
    h('span', {class: 'ev-body'},
      progress ? h('span', {class: 'muted'}, `progress ${Math.round(b.progress || 0)}%`) : badge(b.status),
      stage ? h('span', {class: 'muted'}, ' · ' + stage) : null,
      b.error_message ? h('div', {class: 'err'}, b.error_message) : null),
    h('code', {class: 'ev-type muted'}, `#${ev.id} ${ev.event}`));
}

export function renderTask(root, id) {
  const previews = new Previews();
  let task = null;
  let stream = null;
  let closed = false;
  let pollDeliveries = null;

  const head = h('div', {class: 'title-row'});
  const actions = h('div', {class: 'actions'});
  const msg = h('div', {id: 'task-msg'});
  const bar = progressBar(0, '');
  bar.id = 'task-progress';
  const stageEl = h('div', {class: 'stage muted', id: 'task-stage'});
  const errorsEl = h('div', {id: 'task-errors'});
  const resultEl = h('div', {id: 'task-result'});
  const detailsEl = h('dl', {class: 'grid', id: 'task-details'});
  const fieldsEl = h('pre', {class: 'json'});
  const timeline = h('ol', {class: 'timeline', id: 'timeline'});
  const hooksEl = h('div', {id: 'task-webhooks'});
  let resultShown = '';

  root.append(
    h('div', {class: 'crumbs'}, h('a', {href: '#/tasks'}, '← Tasks')),
    head, msg,
    h('section', {class: 'card', id: 'progress-card'}, h('div', {class: 'progress-row'}, bar, actions), stageEl),
    errorsEl,
    section('Result', 'result-card', resultEl),
    h('div', {class: 'cols'},
      section('Events', 'events-card', timeline),
      section('Details', 'details-card', detailsEl, h('details', {}, h('summary', {}, 'All fields (JSON)'), fieldsEl))),
    section('Webhook deliveries', 'webhooks-card', hooksEl));

  function renderHead() {
    replace(head, h('h1', {}, h('code', {}, task.task_type), ' task'),
      h('span', {id: 'task-status'}, badge(task.status)),
      h('code', {class: 'muted id', title: 'Task id'}, task.id));
    setProgress(bar, task.status === 'completed' ? 100 : task.progress, task.status);
    stageEl.textContent = [task.stage, task.started_at && !TERMINAL.includes(task.status) ? `running for ${seconds((Date.now() - new Date(task.started_at)) / 1000)}` : '',
      task.completed_at && task.started_at ? `ran ${seconds((new Date(task.completed_at) - new Date(task.started_at)) / 1000)}` : ''].filter(Boolean).join(' · ');
    replace(actions);
    if (task.status === 'pending' || task.status === 'executing') {
      actions.append(h('button', {type: 'button', class: 'danger', id: 'cancel', onclick: () => act('cancel')}, 'Cancel'));
    }
    if (task.status === 'failed' || task.status === 'cancelled') {
      actions.append(h('button', {type: 'button', id: 'retry', onclick: () => act('retry')}, 'Retry'));
    }
  }

  function renderBody() {
    renderHead();
    const errs = task.errors || [];
    replace(errorsEl, errs.length ? section('Errors', 'errors-card', h('ol', {class: 'errors'}, errs.map((e) => h('li', {},
      h('span', {class: 'muted'}, `attempt ${e.attempt} · `), h('code', {}, e.category || 'error'), ' ', when(e.at),
      h('div', {class: 'err'}, e.message))))) : null);
    replace(detailsEl, DETAILS.filter(([k]) => task[k] !== undefined && task[k] !== null && task[k] !== '').map(([k, label]) => [
      h('dt', {}, label), h('dd', {}, TIMES.has(k) ? when(task[k]) : String(task[k]))]));
    fieldsEl.textContent = JSON.stringify(task, null, 2);
    const res = task.result || null;
    const key = JSON.stringify([res, TERMINAL.includes(task.status)]);
    if (key === resultShown) return;
    resultShown = key;
    previews.close();
    if (!res) {
      replace(resultEl, h('p', {class: 'muted'}, TERMINAL.includes(task.status) ? 'No result.' : 'The result appears here when the task completes.'));
      return;
    }
    const arts = res.artifacts || [];
    replace(resultEl,
      arts.length ? h('div', {class: 'artifacts', id: 'artifacts'}, arts.map((a) => previews.card(a))) : null,
      res.data && Object.keys(res.data).length ? h('details', {open: !arts.length}, h('summary', {}, 'Data'), h('pre', {class: 'json'}, JSON.stringify(res.data, null, 2))) : null);
  }

  async function refresh() {
    try {
      task = await get('/api/v1/tasks/' + encodeURIComponent(id));
      if (!closed) renderBody();
    } catch (err) {
      if (!closed) replace(msg, notice('error', err.status === 404 ? 'No such task (or it belongs to another tenant).' : `Cannot load the task: ${err.message}`));
    }
  }

  async function refreshHooks() {
    try {
      const out = await get(`/api/v1/tasks/${encodeURIComponent(id)}/webhooks`);
      if (closed) return;
      const ds = out.deliveries || [];
      replace(hooksEl, deliveriesTable(ds, redeliver));
      const busy = ds.some((d) => d.status === 'pending');
      if (busy && !pollDeliveries) pollDeliveries = setInterval(refreshHooks, 2000);
      if (!busy && pollDeliveries) {
        clearInterval(pollDeliveries);
        pollDeliveries = null;
      }
    } catch (err) {
      if (!closed) replace(hooksEl, notice('error', `Cannot load deliveries: ${err.message}`));
    }
  }

  async function redeliver(d, btn) {
    btn.disabled = true;
    try {
      await post(`/api/v1/webhooks/deliveries/${d.id}/redeliver`);
      replace(msg, notice('info', `Delivery ${d.id} is queued to be sent again.`));
    } catch (err) {
      replace(msg, notice('error', `Cannot redeliver: ${err.message}`));
    }
    refreshHooks();
  }

  async function act(what) {
    const btn = actions.querySelector('#' + what);
    if (btn) btn.disabled = true;
    try {
      task = await post(`/api/v1/tasks/${encodeURIComponent(id)}/${what}`);
      replace(msg, notice('info', what === 'cancel' ? 'Cancelled.' : 'Queued to run again.'));
      renderBody();
      if (what === 'retry' && stream && stream.ended) {
        stream.ended = false;
        stream.start();
      }
    } catch (err) {
      replace(msg, notice('error', `Cannot ${what}: ${err.message}`));
      if (btn) btn.disabled = false;
    }
  }

  const refreshSoon = debounce(() => {
    refresh();
    refreshHooks();
  }, 150);

  function onEvent(ev) {
    const b = ev.data || {};
    timeline.prepend(timelineItem(ev));
    if (!task) return;
    // A replayed event older than the task as read changes nothing.
    if (b.timestamp && task.updated_at && new Date(b.timestamp) < new Date(task.updated_at)) return;
    task.updated_at = b.timestamp || task.updated_at;
    const before = task.status;
    task.status = b.status || task.status;
    if (typeof b.progress === 'number') task.progress = b.progress;
    if (b.metadata && b.metadata.stage) task.stage = b.metadata.stage;
    renderHead();
    if (ev.event.endsWith('_status_update') || before !== task.status) refreshSoon();
  }

  refresh().then(() => {
    if (closed || !task) return;
    refreshHooks();
    stream = new EventStream(`/api/v1/tasks/${encodeURIComponent(id)}/events`, {
      onEvent,
      onState: (st) => {
        if (closed) return;
        setLive(st);
        if (st === 'ended') stream.ended = true;
      },
      onError: (err) => replace(msg, notice('error', `Live updates stopped: ${err.message}`)),
      // The server ends a task's stream after its terminal event.
      reconnect: () => !TERMINAL.includes(task.status),
    }).start();
  });

  const tick = setInterval(() => task && !TERMINAL.includes(task.status) && renderHead(), 5000);
  return () => {
    closed = true;
    clearInterval(tick);
    if (pollDeliveries) clearInterval(pollDeliveries);
    refreshSoon.cancel();
    if (stream) stream.close();
    previews.close();
  };
}
