// What the dashboard learnt of the signed-in key, and the stream
// indicator in the header, shared by the views.

// session holds the task types and whether the key is an admin key (a
// tenant key gets 403 from the monitoring routes) or a tenant's.
export const session = {types: [], admin: false, tenant: ''};

// typeNamed returns the task type called name, or undefined.
export function typeNamed(name) {
  return session.types.find((t) => t.name === name);
}

// setLive shows the state of the current view's event stream: live,
// reconnecting, ended or idle.
export function setLive(state) {
  const el = document.getElementById('live');
  if (!el) return;
  el.dataset.state = state;
  el.title = {live: 'Live: following the event stream', reconnecting: 'Reconnecting to the event stream…',
    ended: 'Stream ended', idle: 'No stream'}[state] || state;
}
