// The command executor's server protocol (docs/executors.md, "The server
// protocol"): one JSON request a line on stdin, replies as JSON lines on
// stdout. Inference is CPU-bound and blocks the event loop, so tasks run
// one at a time in arrival order; a cancel drops a task that has not
// started and stops one that has at its next progress report.
import readline from 'node:readline';

/** A failure with a category of the protocol (invalid_input, provider_error, …). */
export class TaskError extends Error {
  constructor(category, message) {
    super(message);
    this.category = category;
  }
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Logs go to stderr: the executor keeps them as log lines. */
export function log(...args) {
  process.stderr.write(args.join(' ') + '\n');
}

/**
 * serve answers run requests with handlers[operation](req, ctx), where
 * ctx.progress(pct, stage) reports progress (and throws once the task is
 * cancelled) and ctx.output(obj) merges obj into the task's result data.
 */
export function serve(handlers) {
  const cancelled = new Set();
  let chain = Promise.resolve();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let req;
    try {
      req = JSON.parse(line);
    } catch {
      log('ignoring a line that is not JSON');
      return;
    }
    if (req.op === 'cancel') {
      cancelled.add(req.id);
      return;
    }
    if (req.op !== 'run') return;
    chain = chain.then(() => run(req));
  });
  rl.on('close', () => chain.then(() => process.exit(0)));

  async function run(req) {
    const id = req.id;
    const check = () => {
      if (cancelled.has(id)) throw new TaskError('cancelled', 'cancelled');
    };
    const ctx = {
      progress(pct, stage) {
        check();
        say({ id, progress: pct, stage });
      },
      output(obj) {
        say({ id, output: obj });
      },
    };
    try {
      check();
      const handler = handlers[req.operation];
      if (!handler) {
        throw new TaskError('invalid_input', `operation ${JSON.stringify(req.operation)} is not served here (serves: ${Object.keys(handlers).join(', ')})`);
      }
      await handler(req, ctx);
      say({ id, done: true });
    } catch (err) {
      if (cancelled.has(id)) return; // already reported cancelled by the executor
      const category = err instanceof TaskError ? err.category : 'provider_error';
      log(`task ${req.task_id}: ${err && err.stack ? err.stack : err}`);
      say({ id, error: { category, message: String(err && err.message ? err.message : err) } });
    } finally {
      cancelled.delete(id);
    }
  }
}

/** input returns the local path of an input field, or throws invalid_input. */
export function input(req, field) {
  const p = req.inputs && req.inputs[field];
  if (!p) throw new TaskError('invalid_input', `${field} is required`);
  return p;
}
