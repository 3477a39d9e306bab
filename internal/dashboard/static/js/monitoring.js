// Monitoring: queues, worker processes, executors and tenants from
// /api/v1/monitoring/*, refreshed every few seconds. Every route but
// tenants needs an admin key; a tenant key sees an "admin only" message
// there and its own usage under tenants.

import {get, ApiError} from './api.js';
import {h, replace, notice, when, seconds, table, badge} from './dom.js';

const REFRESH_MS = 5000;

function pct(v) {
  return (Math.round(v * 1000) / 10) + '%';
}

function counts(c) {
  return `${c.last_1m} / ${c.last_5m} / ${c.last_15m}`;
}

function up(v) {
  return h('span', {class: 'dstatus ' + (v ? 'd-delivered' : 'd-failed')}, v ? 'up' : 'down');
}

const SECTIONS = [
  {
    id: 'queues', title: 'Queues', path: '/api/v1/monitoring/queues',
    render: (d) => (d.queues.length ? table(
      ['Queue', 'Pending', 'Executing', 'Oldest pending', 'Completed 1/5/15 min', 'Failed 1/5/15 min'],
      d.queues.map((q) => h('tr', {dataset: {queue: q.queue}}, h('td', {}, h('code', {}, q.queue)), h('td', {class: 'num'}, String(q.pending)),
        h('td', {class: 'num'}, String(q.executing)), h('td', {}, q.oldest_pending_at ? `${seconds(q.oldest_pending_age_seconds)} waiting` : '—'),
        h('td', {class: 'num'}, counts(q.completed)), h('td', {class: 'num' + (q.failed.last_15m ? ' err' : '')}, counts(q.failed))))) :
      h('p', {class: 'muted'}, 'No queue has had a task in the last 15 minutes.')),
  },
  {
    id: 'workers', title: 'Processes', path: '/api/v1/monitoring/workers',
    render: (d) => (d.workers.length ? table(
      ['Instance', 'Role', 'Version', 'State', 'Running tasks', 'Started', 'Last heartbeat'],
      d.workers.map((w) => h('tr', {}, h('td', {}, h('code', {}, w.instance)), h('td', {}, w.role), h('td', {}, w.version || '—'),
        h('td', {}, up(w.up)), h('td', {class: 'num'}, String(w.running_tasks)), h('td', {}, when(w.started_at)), h('td', {}, when(w.last_seen_at))))) :
      h('p', {class: 'muted'}, 'No process has reported in the last hour.')),
  },
  {
    id: 'executors', title: 'Executors', path: '/api/v1/monitoring/executors',
    render: (d) => table(
      ['Name', 'Type', 'Running', 'Paused', 'Completed 15 min', 'Failed 15 min', 'Error rate', 'Mean run', 'Servers'],
      d.executors.map((e) => h('tr', {}, h('td', {}, h('code', {}, e.name)), h('td', {}, e.type),
        h('td', {class: 'num'}, e.concurrency ? `${e.running} / ${e.concurrency}` : String(e.running)),
        h('td', {}, e.paused_until ? [when(e.paused_until), e.pause_reason ? ' · ' + e.pause_reason : ''] : '—'),
        h('td', {class: 'num'}, String(e.last_15m.completed)), h('td', {class: 'num'}, String(e.last_15m.failed)),
        h('td', {class: 'num'}, pct(e.last_15m.error_rate)), h('td', {class: 'num'}, e.last_15m.mean_run_seconds ? seconds(e.last_15m.mean_run_seconds) : '—'),
        h('td', {}, (e.servers || []).length ? h('ul', {class: 'servers'}, e.servers.map((sv) => h('li', {},
          up(sv.up), ' ', h('code', {}, sv.url), ` ${sv.slots_used}/${sv.slots} slots`, sv.last_error ? h('div', {class: 'err'}, sv.last_error) : null))) : '—')))),
  },
  {
    id: 'tenants', title: 'Tenants', path: '/api/v1/monitoring/tenants',
    render: (d) => (d.tenants.length ? table(
      ['Tenant', 'Total', 'Pending', 'Executing', 'Completed', 'Failed', 'Cancelled', 'Run time'],
      d.tenants.map((t) => h('tr', {}, h('td', {}, t.tenant_id ? h('code', {}, t.tenant_id) : h('span', {class: 'muted'}, '(admin keys)')),
        h('td', {class: 'num'}, String(t.total)),
        ['pending', 'executing', 'completed', 'failed', 'cancelled'].map((st) => h('td', {class: 'num'}, t.tasks[st] ? [badge(st), ' ', String(t.tasks[st])] : '0')),
        h('td', {class: 'num'}, seconds(t.run_seconds))))) :
      h('p', {class: 'muted'}, 'No tasks yet.')),
  },
];

export function renderMonitoring(root) {
  const boxes = new Map();
  const stamp = h('span', {class: 'muted small', id: 'mon-stamp'});
  root.append(h('div', {class: 'title-row'}, h('h1', {}, 'Monitoring'), stamp));
  const grid = h('div', {class: 'mon-grid'});
  for (const sec of SECTIONS) {
    const body = h('div', {class: 'mon-body'}, h('span', {class: 'muted'}, 'Loading…'));
    boxes.set(sec.id, body);
    grid.append(h('section', {class: 'card', id: 'mon-' + sec.id, dataset: {section: sec.id}}, h('h2', {}, sec.title), body));
  }
  root.append(grid);
  let closed = false;

  async function refresh() {
    await Promise.all(SECTIONS.map(async (sec) => {
      const box = boxes.get(sec.id);
      try {
        const d = await get(sec.path);
        if (!closed) replace(box, sec.render(d));
        box.parentElement.dataset.state = 'ok';
      } catch (err) {
        if (closed) return;
        if (err instanceof ApiError && err.status === 403) {
          box.parentElement.dataset.state = 'forbidden';
          replace(box, notice('warn', h('strong', {}, 'Admin only. '), 'This view covers the whole deployment; sign in with an admin API key to see it.'));
          return;
        }
        box.parentElement.dataset.state = 'error';
        replace(box, notice('error', `Cannot load: ${err.message}`));
      }
    }));
    if (!closed) stamp.textContent = 'Updated ' + new Date().toLocaleTimeString() + ' · every 5 s';
  }
  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => {
    closed = true;
    clearInterval(timer);
  };
}
