// The live task list: one page from GET /api/v1/tasks/ with the filters
// (status, type) in the hash, kept up to date by the /api/v1/events
// stream: rows change in place, new tasks appear at the top, and a task
// that leaves the status filter leaves the list.

import {get, EventStream} from './api.js';
import {h, replace, badge, progressBar, setProgress, when, shortID, notice, STATUSES} from './dom.js';
import {session, setLive} from './session.js';

const PAGE = 50;

function listQuery(filter, cursor) {
  const q = new URLSearchParams();
  for (const st of filter.statuses) q.append('status', st);
  if (filter.type) q.append('task_type', filter.type);
  q.set('limit', PAGE);
  if (cursor) q.set('cursor', cursor);
  return '/api/v1/tasks/?' + q.toString();
}

function hashFor(filter) {
  const q = new URLSearchParams();
  for (const st of filter.statuses) q.append('status', st);
  if (filter.type) q.set('type', filter.type);
  const qs = q.toString();
  return '#/tasks' + (qs ? '?' + qs : '');
}

// Row is one task in the table, updated in place.
class Row {
  constructor(task) {
    this.task = {};
    this.status = h('td', {class: 'c-status'});
    this.bar = progressBar(0, '');
    this.stage = h('td', {class: 'c-stage muted'});
    this.created = h('td', {class: 'c-created'});
    this.updated = h('td', {class: 'c-updated'});
    this.tr = h('tr', {class: 'task-row', dataset: {taskId: task.id}},
      this.status,
      h('td', {class: 'c-type'}, h('code', {}, task.task_type)),
      h('td', {class: 'c-id'}, h('a', {href: '#/tasks/' + task.id, title: task.id}, shortID(task.id))),
      h('td', {class: 'c-progress'}, this.bar),
      this.stage, this.created, this.updated);
    this.tr.addEventListener('click', (e) => {
      if (e.target.closest('a')) return;
      location.hash = '#/tasks/' + task.id;
    });
    this.update(task);
  }

  update(t) {
    Object.assign(this.task, t);
    const task = this.task;
    this.tr.dataset.status = task.status;
    replace(this.status, badge(task.status));
    setProgress(this.bar, task.status === 'completed' ? 100 : task.progress, task.status);
    const text = task.error_message || task.stage || '';
    this.stage.textContent = text;
    this.stage.title = text;
    this.stage.classList.toggle('err', Boolean(task.error_message) && task.status === 'failed');
    replace(this.created, when(task.created_at));
    replace(this.updated, when(task.updated_at));
  }
}

// fromEvent maps an event body to the task fields a row shows.
function fromEvent(b) {
  const t = {id: b.task_id, task_type: b.task_type, status: b.status, progress: b.progress, updated_at: b.timestamp};
  if (b.metadata && b.metadata.stage) t.stage = b.metadata.stage;
  if (b.error_message !== undefined) t.error_message = b.error_message || '';
  return t;
}

export function renderTaskList(root, query) {
  const filter = {statuses: query.getAll('status').filter((s) => STATUSES.includes(s)), type: query.get('type') || ''};
  const rows = new Map();
  const tbody = h('tbody', {id: 'task-rows'});
  const empty = h('tr', {class: 'empty'}, h('td', {colspan: 7, class: 'muted'}, 'No tasks match.'));
  const more = h('button', {type: 'button', class: 'secondary', id: 'more', hidden: true}, 'Load more');
  const status = h('div', {id: 'list-status'});
  let cursor = null;
  let stream = null;
  let closed = false;

  const chips = STATUSES.map((st) => h('label', {class: 'chip st-' + st},
    h('input', {type: 'checkbox', value: st, checked: filter.statuses.includes(st), onchange: apply}), st));
  const typeSel = h('select', {id: 'filter-type', onchange: apply},
    h('option', {value: ''}, 'All types'),
    session.types.map((t) => h('option', {value: t.name, selected: t.name === filter.type}, t.name)));

  function apply() {
    const f = {statuses: chips.map((c) => c.querySelector('input')).filter((i) => i.checked).map((i) => i.value), type: typeSel.value};
    location.hash = hashFor(f);
  }

  const matches = (t) => (!filter.type || t.task_type === filter.type) && (!filter.statuses.length || filter.statuses.includes(t.status));

  function syncEmpty() {
    if (rows.size === 0 && !tbody.contains(empty)) tbody.append(empty);
    if (rows.size > 0) empty.remove();
  }

  function add(task, top) {
    const row = new Row(task);
    rows.set(task.id, row);
    if (top) tbody.prepend(row.tr);
    else tbody.append(row.tr);
  }

  // onEvent applies one event: an older event than what a row shows (the
  // list was read after the event was sent) is ignored.
  function onEvent({data: b}) {
    if (!b || !b.task_id || b.task_type === 'workflow') return;
    const t = fromEvent(b);
    const row = rows.get(t.id);
    if (row) {
      if (row.task.updated_at && t.updated_at && new Date(t.updated_at) < new Date(row.task.updated_at)) return;
      if (!matches({...row.task, ...t})) {
        row.tr.remove();
        rows.delete(t.id);
        syncEmpty();
        return;
      }
      row.update(t);
      return;
    }
    if (!matches(t)) return;
    if (b.status === 'pending' && b.metadata && b.metadata.attempt === 0) t.created_at = b.timestamp;
    add(t, true);
    syncEmpty();
    if (!t.created_at) {
      get('/api/v1/tasks/' + t.id).then((full) => rows.get(t.id) && rows.get(t.id).update(full)).catch(() => {});
    }
  }

  async function load() {
    try {
      const page = await get(listQuery(filter, cursor));
      for (const task of page.items) {
        const row = rows.get(task.id);
        if (row) continue; // the stream added it first, newer
        add(task, false);
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      syncEmpty();
      replace(status);
    } catch (err) {
      replace(status, notice('error', `Cannot list tasks: ${err.message}`));
    }
  }

  more.addEventListener('click', load);

  // The stream starts from now before the first page is read, so no
  // change between the two is missed.
  const q = new URLSearchParams();
  if (filter.type) q.append('task_type', filter.type);
  stream = new EventStream('/api/v1/events' + (q.toString() ? '?' + q : ''), {
    onEvent,
    onState: (st) => !closed && setLive(st),
    onError: (err) => replace(status, notice('error', `Live updates stopped: ${err.message}`)),
  }).start();

  root.append(
    h('div', {class: 'title-row'}, h('h1', {}, 'Tasks'), h('a', {class: 'button', href: '#/new'}, 'New task')),
    h('div', {class: 'filters', id: 'filters'}, h('span', {class: 'muted'}, 'Status'), chips, h('span', {class: 'muted sep'}, 'Type'), typeSel,
      (filter.statuses.length || filter.type) ? h('a', {href: '#/tasks', class: 'clear'}, 'Clear filters') : null),
    status,
    h('div', {class: 'table-wrap'}, h('table', {class: 'tasks', id: 'tasks'},
      h('thead', {}, h('tr', {}, ['Status', 'Type', 'Id', 'Progress', 'Stage / error', 'Created', 'Updated'].map((c) => h('th', {}, c)))),
      tbody)),
    h('div', {class: 'more-row'}, more));
  load();
  const tick = setInterval(() => {
    for (const row of rows.values()) {
      replace(row.created, when(row.task.created_at));
      replace(row.updated, when(row.task.updated_at));
    }
  }, 15000);

  return () => {
    closed = true;
    clearInterval(tick);
    if (stream) stream.close();
  };
}
