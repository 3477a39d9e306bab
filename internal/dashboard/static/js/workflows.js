// Workflows: the list, and one workflow drawn as its graph (SVG, steps
// layered by depth, edges from each dependency) with every step's state,
// kept live by the event stream.

import {get, post, EventStream} from './api.js';
import {h, s, replace, badge, when, notice, debounce, shortID} from './dom.js';
import {setLive} from './session.js';

const WF_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'];

export function renderWorkflowList(root, query) {
  const status = WF_STATUSES.includes(query.get('status')) ? query.get('status') : '';
  const tbody = h('tbody', {id: 'workflow-rows'});
  const msg = h('div');
  const more = h('button', {type: 'button', class: 'secondary', hidden: true}, 'Load more');
  let before = '';
  const sel = h('select', {id: 'wf-status', onchange: () => (location.hash = '#/workflows' + (sel.value ? '?status=' + sel.value : ''))},
    h('option', {value: ''}, 'All statuses'), WF_STATUSES.map((st) => h('option', {value: st, selected: st === status}, st)));

  async function load(reset) {
    if (reset) before = '';
    const q = new URLSearchParams({limit: 50});
    if (status) q.set('status', status);
    if (before) q.set('before', before);
    try {
      const page = await get('/api/v1/workflows/?' + q);
      const rows = (page.workflows || []).map((w) => h('tr', {class: 'wf-row', dataset: {workflowId: w.id, status: w.status}},
        h('td', {}, badge(w.status)),
        h('td', {}, h('a', {href: '#/workflows/' + w.id, title: w.id}, shortID(w.id))),
        h('td', {}, w.origin_tenant_id || h('span', {class: 'muted'}, '—')),
        h('td', {}, when(w.created_at)), h('td', {}, when(w.started_at)), h('td', {}, when(w.completed_at)),
        h('td', {class: 'err'}, w.error || '')));
      if (reset) tbody.replaceChildren();
      tbody.append(...rows);
      if (!tbody.children.length) tbody.append(h('tr', {}, h('td', {colspan: 7, class: 'muted'}, 'No workflows yet. Create one with POST /api/v1/workflows/ (see the API docs).')));
      before = page.next_before || '';
      more.hidden = !before;
      replace(msg);
    } catch (err) {
      replace(msg, notice('error', `Cannot list workflows: ${err.message}`));
    }
  }
  more.addEventListener('click', () => load(false));
  const reload = debounce(() => load(true), 300);
  const stream = new EventStream('/api/v1/events?task_type=workflow', {onEvent: reload, onState: setLive}).start();
  root.append(h('div', {class: 'title-row'}, h('h1', {}, 'Workflows')),
    h('div', {class: 'filters'}, h('span', {class: 'muted'}, 'Status'), sel), msg,
    h('div', {class: 'table-wrap'}, h('table', {class: 'workflows'},
      h('thead', {}, h('tr', {}, ['Status', 'Id', 'Tenant', 'Created', 'Started', 'Finished', 'Error'].map((c) => h('th', {}, c)))), tbody)),
    h('div', {class: 'more-row'}, more));
  load(true);
  return () => {
    reload.cancel();
    stream.close();
  };
}

// layout gives each step a column (its depth: 0 without dependencies,
// else one more than its deepest dependency) and a row in that column,
// ordered by the mean row of its dependencies to keep edges short.
export function layout(steps) {
  const byID = new Map(steps.map((st) => [st.id, st]));
  const depth = new Map();
  const visit = (st, seen) => {
    if (depth.has(st.id)) return depth.get(st.id);
    if (seen.has(st.id)) return 0; // a cycle cannot be stored; be safe
    seen.add(st.id);
    let d = 0;
    for (const dep of st.depends_on || []) if (byID.has(dep)) d = Math.max(d, visit(byID.get(dep), seen) + 1);
    depth.set(st.id, d);
    return d;
  };
  steps.forEach((st) => visit(st, new Set()));
  const layers = [];
  steps.forEach((st) => (layers[depth.get(st.id)] ||= []).push(st));
  const row = new Map();
  layers.forEach((layer, i) => {
    if (i > 0) {
      const key = (st) => {
        const rs = (st.depends_on || []).map((d) => row.get(d)).filter((r) => r !== undefined);
        return rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : 0;
      };
      layer.sort((a, b) => key(a) - key(b));
    }
    layer.forEach((st, j) => row.set(st.id, j));
  });
  return {layers, depth, row};
}

const NW = 180;
const NH = 60;
const GX = 90;
const GY = 28;
const PAD = 16;

// graph draws the steps as an SVG; progress maps task ids to percent.
function graph(wf, progress) {
  const steps = wf.steps || [];
  const {layers, depth, row} = layout(steps);
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const width = PAD * 2 + layers.length * NW + (layers.length - 1) * GX;
  const height = PAD * 2 + tallest * NH + (tallest - 1) * GY;
  const pos = (st) => {
    const layer = layers[depth.get(st.id)];
    const offset = ((tallest - layer.length) * (NH + GY)) / 2;
    return {x: PAD + depth.get(st.id) * (NW + GX), y: PAD + offset + row.get(st.id) * (NH + GY)};
  };
  const byID = new Map(steps.map((st) => [st.id, st]));
  const edges = [];
  for (const st of steps) {
    const b = pos(st);
    for (const dep of st.depends_on || []) {
      if (!byID.has(dep)) continue;
      const a = pos(byID.get(dep));
      const x1 = a.x + NW;
      const y1 = a.y + NH / 2;
      const x2 = b.x - 6;
      const y2 = b.y + NH / 2;
      const mx = (x1 + x2) / 2;
      edges.push(s('path', {class: 'edge st-' + byID.get(dep).status, d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)'}));
    }
  }
  const nodes = steps.map((st) => {
    const {x, y} = pos(st);
    const label = st.id.length > 22 ? st.id.slice(0, 21) + '…' : st.id;
    const pct = st.status === 'completed' ? 100 : (st.task_id && progress.get(st.task_id)) || 0;
    const g = s('g', {class: 'node st-' + st.status, dataset: {step: st.id, status: st.status}, transform: `translate(${x},${y})`},
      s('title', {}, `${st.id}: ${st.status}${st.error ? ' — ' + st.error : ''}`),
      s('rect', {class: 'box', width: NW, height: NH, rx: 8}),
      s('text', {class: 'label', x: 12, y: 24}, label),
      s('text', {class: 'state', x: 12, y: 44}, st.status + (st.status === 'running' ? ` · ${Math.round(pct)}%` : '')),
      s('rect', {class: 'bar-bg', x: 0, y: NH - 5, width: NW, height: 5}),
      s('rect', {class: 'bar', x: 0, y: NH - 5, width: (NW * pct) / 100, height: 5}));
    return st.task_id ? s('a', {href: '#/tasks/' + st.task_id}, g) : g;
  });
  return s('svg', {class: 'graph', id: 'workflow-graph', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'Workflow graph'},
    s('defs', {}, s('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
      s('path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead'}))),
    edges, nodes);
}

export function renderWorkflow(root, id) {
  const progress = new Map();
  let wf = null;
  let closed = false;
  const head = h('div', {class: 'title-row'});
  const msg = h('div');
  const actions = h('div', {class: 'actions'});
  const graphBox = h('div', {class: 'graph-wrap'});
  const stepsBox = h('div');
  root.append(h('div', {class: 'crumbs'}, h('a', {href: '#/workflows'}, '← Workflows')), head, msg,
    h('section', {class: 'card'}, h('div', {class: 'title-row'}, h('h2', {}, 'Graph'), actions), graphBox),
    h('section', {class: 'card'}, h('h2', {}, 'Steps'), stepsBox));

  async function act(what) {
    try {
      const out = await post(`/api/v1/workflows/${encodeURIComponent(id)}/${what}`);
      wf = out.workflow || out;
      replace(msg, notice('info', what === 'cleanup' ? `Deleted ${out.deleted_artifacts} intermediate artifact(s).` : `Workflow ${what} done.`));
      draw();
    } catch (err) {
      replace(msg, notice('error', `Cannot ${what}: ${err.message}`));
    }
  }

  function draw() {
    replace(head, h('h1', {}, 'Workflow'), h('span', {id: 'workflow-status'}, badge(wf.status)), h('code', {class: 'muted id'}, wf.id));
    replace(actions,
      wf.status === 'pending' ? h('button', {type: 'button', onclick: () => act('start')}, 'Start') : null,
      ['pending', 'running'].includes(wf.status) ? h('button', {type: 'button', class: 'danger', onclick: () => act('cancel')}, 'Cancel') : null,
      ['failed', 'cancelled'].includes(wf.status) ? h('button', {type: 'button', onclick: () => act('resume')}, 'Resume') : null,
      ['completed', 'failed', 'cancelled'].includes(wf.status) ? h('button', {type: 'button', class: 'secondary', onclick: () => act('cleanup')}, 'Clean up intermediates') : null);
    replace(graphBox, graph(wf, progress));
    replace(stepsBox, h('div', {class: 'table-wrap'}, h('table', {class: 'steps'},
      h('thead', {}, h('tr', {}, ['Step', 'Status', 'Task', 'Depends on', 'Error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, (wf.steps || []).map((st) => h('tr', {dataset: {step: st.id}},
        h('td', {}, h('code', {}, st.id)), h('td', {}, badge(st.status)),
        h('td', {}, st.task_id ? h('a', {href: '#/tasks/' + st.task_id}, shortID(st.task_id)) : h('span', {class: 'muted'}, 'not yet')),
        h('td', {}, (st.depends_on || []).join(', ') || h('span', {class: 'muted'}, '—')),
        h('td', {class: 'err'}, st.error || '')))))),
    wf.error ? notice('error', wf.error) : null,
    h('p', {class: 'muted small'}, 'Created ', when(wf.created_at), wf.started_at ? [' · started ', when(wf.started_at)] : '', wf.completed_at ? [' · finished ', when(wf.completed_at)] : ''));
  }

  async function load() {
    try {
      wf = await get('/api/v1/workflows/' + encodeURIComponent(id));
      if (!closed) draw();
    } catch (err) {
      if (!closed) replace(msg, notice('error', err.status === 404 ? 'No such workflow (or another tenant’s).' : `Cannot load the workflow: ${err.message}`));
    }
  }
  const reload = debounce(load, 200);

  // Every event: the workflow's own, and its steps' tasks' (progress is
  // drawn from them; a status change reloads the steps).
  const stream = new EventStream('/api/v1/events', {
    onState: (st) => !closed && setLive(st),
    onEvent: ({event, data: b}) => {
      if (!wf || !b) return;
      const stepTask = (wf.steps || []).some((st) => st.task_id === b.task_id);
      if (b.task_id !== wf.id && !stepTask) {
        // A new step's task is created as its dependency completes; that
        // completion (a step task's event) reloads the steps first.
        return;
      }
      if (event.endsWith('_progress_update')) {
        progress.set(b.task_id, b.progress);
        draw();
        return;
      }
      reload();
    },
  }).start();
  load();
  return () => {
    closed = true;
    reload.cancel();
    stream.close();
  };
}
