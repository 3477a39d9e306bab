// Drives a live compute server through openapi-fetch with the types
// openapi-typescript generated from its /openapi.json (src/schema.d.ts):
// union create, get as the concrete type, list with several statuses,
// patch, cancel, a completed task's typed result, and problem responses.
// Exits non-zero on the first mismatch.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type TaskPublic = components["schemas"]["TaskPublic"];
type EchoTask = components["schemas"]["EchoTaskPublic"];
type Problem = components["schemas"]["ErrorModel"];

function fail(msg: string): never {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function ok(cond: boolean, msg: string): asserts cond {
  if (!cond) fail(msg);
}

// asEcho narrows a task by its discriminator.
function asEcho(t: TaskPublic | undefined): EchoTask {
  ok(t !== undefined && t.task_type === "echo", `not an echo task: ${JSON.stringify(t)}`);
  return t as EchoTask;
}

const baseUrl = process.env.COMPUTE_URL ?? fail("COMPUTE_URL is not set");
const key = process.env.COMPUTE_API_KEY ?? fail("COMPUTE_API_KEY is not set");

// Every request body sent, to check what the client puts on the wire.
let lastBody = "";
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${key}` },
  fetch: async (req: Request) => {
    lastBody = req.body ? await req.clone().text() : "";
    return fetch(req);
  },
});

function keyCount(body: string, name: string): number {
  return (body.match(new RegExp(`"${name}"\\s*:`, "g")) ?? []).length;
}

async function main(): Promise<void> {
  // Union create: an echo task that waits, so it can be patched.
  const later = new Date(Date.now() + 24 * 3600 * 1000).toISOString();
  const created = await client.POST("/api/v1/tasks/", {
    body: { task_type: "echo", message: "from openapi-fetch", run_at: later },
  });
  ok(created.response.status === 201 && created.data !== undefined, `create: ${created.response.status} ${JSON.stringify(created.error)}`);
  ok(keyCount(lastBody, "task_type") === 1, `create sent task_type ${keyCount(lastBody, "task_type")} times`);
  const echo = asEcho(created.data);
  const id = echo.id;
  ok(echo.status === "pending" && echo.message === "from openapi-fetch" && echo.result === undefined, `created ${JSON.stringify(echo)}`);

  // Get, as the concrete type.
  const got = await client.GET("/api/v1/tasks/{task_id}", { params: { path: { task_id: id } } });
  const e = asEcho(got.data);
  ok(e.id === id && Array.isArray(e.errors) && e.errors.length === 0, `get ${JSON.stringify(e)}`);

  // List with two statuses and a type.
  const list = await client.GET("/api/v1/tasks/", {
    params: { query: { status: ["pending", "cancelled"], task_type: ["echo"] } },
  });
  ok(list.data !== undefined, `list: ${list.response.status} ${JSON.stringify(list.error)}`);
  ok(Array.isArray(list.data.items), "list items is not an array");
  for (const it of list.data.items) {
    ok(it.status === "pending" || it.status === "cancelled", `list item in status ${it.status}`);
  }
  ok(list.data.items.some((it) => it.id === id), "the new task is not listed");

  // Patch.
  const patched = await client.PATCH("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: id } },
    body: { message: "patched by openapi-fetch", priority: 5 },
  });
  const pe = asEcho(patched.data);
  ok(pe.message === "patched by openapi-fetch" && pe.priority === 5, `patched ${JSON.stringify(pe)}`);

  // Cancel.
  const cancelled = await client.POST("/api/v1/tasks/{task_id}/cancel", { params: { path: { task_id: id } } });
  ok(asEcho(cancelled.data).status === "cancelled", `cancel ${JSON.stringify(cancelled.data ?? cancelled.error)}`);

  // A generation task runs to completion; its result is typed.
  const gen = await client.POST("/api/v1/tasks/", {
    body: { task_type: "generation", prompt: "a red dress", seed: 7, width: 64, height: 64 },
  });
  ok(gen.data !== undefined, `create generation: ${JSON.stringify(gen.error)}`);
  const genId = gen.data.id;
  const deadline = Date.now() + 30_000;
  let result: components["schemas"]["ResultBody"] | undefined;
  for (;;) {
    const r = await client.GET("/api/v1/tasks/{task_id}/result", { params: { path: { task_id: genId } } });
    ok(r.data !== undefined, `result: ${JSON.stringify(r.error)}`);
    if (r.data.status === "completed") {
      result = r.data;
      break;
    }
    ok(Date.now() < deadline, "timed out waiting for the generation task");
    await new Promise((res) => setTimeout(res, 50));
  }
  const art = result.result?.artifacts[0];
  ok(art !== undefined && art.url !== "" && art.size > 0 && art.width === 64 && art.seed === 7, `artifact ${JSON.stringify(result)}`);

  // Problems: an unknown task, and a body that fails validation.
  const missing = await client.GET("/api/v1/tasks/{task_id}", {
    params: { path: { task_id: "00000000-0000-4000-8000-000000000000" } },
  });
  const nf: Problem | undefined = missing.error;
  ok(missing.response.status === 404 && nf?.status === 404 && !!nf.title, `missing: ${JSON.stringify(nf)}`);
  const invalid = await client.POST("/api/v1/tasks/", { body: { task_type: "echo", message: "" } });
  const up: Problem | undefined = invalid.error;
  ok(invalid.response.status === 422 && (up?.errors ?? []).some((d) => d.location === "body.message"), `invalid: ${JSON.stringify(up)}`);

  console.log("openapi-typescript + openapi-fetch client: ok");
}

main().catch((err: unknown) => fail(String(err)));
