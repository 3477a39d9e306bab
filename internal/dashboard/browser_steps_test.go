package dashboard_test

// The steps of TestDashboardInChromium after sign-in and the form.

import (
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chromedp/chromedp"
)

// watchList creates tasks through the API while the list is open: their
// rows appear and move to completed live, and under a status filter a
// task leaves the list when it leaves the status.
func watchList(b *browser, base string) {
	b.t.Helper()
	b.show("#/tasks")
	b.wait("the list", `!!document.querySelector('#tasks') && document.querySelector('#live').dataset.state === 'live'`)
	eval[bool](b, record)
	var task struct{ ID string }
	if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a linen shirt","width":256,"height":256}`, &task); code != 201 {
		b.t.Fatalf("create: %d", code)
	}
	row := `document.querySelector('tr.task-row[data-task-id="` + task.ID + `"]')`
	b.wait("the new row", `!!`+row)
	b.wait("the row executing", row+`.dataset.status === 'executing' && Number(`+row+`.querySelector('.progress').dataset.value) > 0`)
	b.shot("task-list-live")
	b.wait("the row completed", row+`.dataset.status === 'completed'`)
	states := eval[[]string](b, `__rec.rows[`+jsString(task.ID)+`]`)
	if len(states) < 3 || !strings.HasPrefix(states[len(states)-1], "completed:100") {
		b.t.Errorf("the row showed %v, want it to go through pending or executing to completed:100", states)
	}

	b.show("#/tasks?status=executing")
	b.wait("the filtered list", `document.querySelector('.chip.st-executing input').checked && document.querySelector('#live').dataset.state === 'live' && !!document.querySelector('#task-rows tr.empty')`)
	if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a wool coat","width":128,"height":128}`, &task); code != 201 {
		b.t.Fatalf("create: %d", code)
	}
	row = `document.querySelector('tr.task-row[data-task-id="` + task.ID + `"]')`
	b.wait("the executing task in the filtered list", `!!`+row)
	b.shot("task-list-filtered")
	b.wait("the task leaving the filtered list", `!`+row)
	if n := eval[int](b, `document.querySelectorAll('tr.task-row').length`); n != 0 {
		b.t.Errorf("the executing filter shows %d rows after every task finished", n)
	}
	if eval[float64](b, `window.__loaded || 0`) == 0 {
		b.t.Error("the list reloaded the page")
	}
}

// openArtifact shows the task's image, fetched with the key into a blob.
func openArtifact(b *browser, id string) {
	b.t.Helper()
	b.show("#/tasks/" + id)
	img := `document.querySelector('#artifacts img')`
	b.wait("the image decoded", `!!`+img+` && `+img+`.complete && `+img+`.naturalWidth > 0`)
	got := eval[struct {
		Src    string `json:"src"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
	}](b, `({src: `+img+`.src, width: `+img+`.naturalWidth, height: `+img+`.naturalHeight})`)
	if !strings.HasPrefix(got.Src, "blob:") || got.Width != 512 || got.Height != 384 {
		b.t.Errorf("artifact image %+v, want a blob: URL of a 512×384 image", got)
	}
	b.shot("task-completed-artifact")
}

// redeliver sends a delivery of the task again from its page.
func redeliver(b *browser, id string, hooks *atomic.Int32) {
	b.t.Helper()
	b.wait("the delivered webhooks", `document.querySelectorAll('#task-webhooks tr.delivery[data-status="delivered"]').length >= 3`)
	before := hooks.Load()
	b.do("redeliver", chromedp.Click(chromedp.CSS(`#task-webhooks button.redeliver`)))
	b.wait("the redelivery notice", `(document.querySelector('#task-msg') || {}).textContent.includes('sent again')`)
	deadline := time.Now().Add(30 * time.Second)
	for hooks.Load() <= before {
		if time.Now().After(deadline) {
			b.t.Fatalf("the receiver got no redelivery (still %d requests)", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.wait("every delivery delivered again", `document.querySelectorAll('#task-webhooks tr.delivery').length >= 3 && !document.querySelector('#task-webhooks tr.delivery[data-status="pending"]')`)
	b.shot("task-webhooks-redelivered")
}

// cancelTask cancels a waiting task from its page.
func cancelTask(b *browser, base string) {
	b.t.Helper()
	var task struct{ ID string }
	body := `{"task_type":"generation","prompt":"a velvet jacket","width":64,"height":64,"run_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/tasks/", body, &task); code != 201 {
		b.t.Fatalf("create: %d", code)
	}
	b.show("#/tasks/" + task.ID)
	b.wait("the cancel button", `!!document.querySelector('#cancel') && document.querySelector('#task-status [data-status]').dataset.status === 'pending'`)
	b.do("cancel", chromedp.Click(chromedp.ID("cancel")))
	b.wait("the cancelled status", `document.querySelector('#task-status [data-status]').dataset.status === 'cancelled' && !!document.querySelector('#retry')`)
	b.wait("the cancellation in the timeline", `!!document.querySelector('#timeline .ev[data-status="cancelled"]')`)
	var got struct{ Status string }
	apiCall(b.t, adminKey, "GET", base+"/api/v1/tasks/"+task.ID, "", &got)
	if got.Status != "cancelled" {
		b.t.Errorf("the task is %q after the cancel button", got.Status)
	}
	b.shot("task-cancelled")
}

// workflowGraph draws a diamond workflow and follows it to completed.
func workflowGraph(b *browser, base string) {
	b.t.Helper()
	var wf struct{ ID string }
	body := `{"start":true,"steps":[
	  {"id":"generate","task":{"task_type":"generation","prompt":"a straw hat","width":128,"height":128}},
	  {"id":"caption","depends_on":["generate"],"task":{"task_type":"echo","message":"made {{steps.generate.task_id}}"}},
	  {"id":"size","depends_on":["generate"],"task":{"task_type":"echo","message":"{{steps.generate.artifacts.0.width}} px"}},
	  {"id":"publish","depends_on":["caption","size"],"task":{"task_type":"echo","message":"done"}}]}`
	if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/workflows/", body, &wf); code != 201 {
		b.t.Fatalf("create workflow: %d", code)
	}
	b.show("#/workflows")
	b.wait("the workflow in the list", `!!document.querySelector('tr.wf-row[data-workflow-id="`+wf.ID+`"]')`)
	b.do("open it", chromedp.Click(chromedp.CSS(`tr.wf-row[data-workflow-id="`+wf.ID+`"] a`)))
	b.wait("the graph", `document.querySelectorAll('#workflow-graph g.node').length === 4 && document.querySelectorAll('#workflow-graph path.edge').length === 4`)
	b.wait("the first step running", `document.querySelector('#workflow-graph g.node[data-step="generate"]').dataset.status === 'running'`)
	b.shot("workflow-running")
	b.wait("every step completed", `document.querySelectorAll('#workflow-graph g.node[data-status="completed"]').length === 4 && document.querySelector('#workflow-status [data-status]').dataset.status === 'completed'`)
	// Layered by depth: generate, then caption and size side by side, then publish.
	xs := eval[map[string]float64](b, `Object.fromEntries([...document.querySelectorAll('#workflow-graph g.node')].map((g) => [g.dataset.step, g.transform.baseVal[0].matrix.e]))`)
	if !(xs["generate"] < xs["caption"] && xs["caption"] == xs["size"] && xs["size"] < xs["publish"]) {
		b.t.Errorf("graph columns %v, want generate < caption = size < publish", xs)
	}
	b.shot("workflow-completed")
}

// monitoring shows the four monitoring sections to the admin key.
func monitoring(b *browser) {
	b.t.Helper()
	b.show("#/monitoring")
	b.wait("the monitoring sections", `['queues', 'workers', 'executors', 'tenants'].every((s) => document.querySelector('#mon-' + s).dataset.state === 'ok')`)
	b.wait("the default queue", `!!document.querySelector('#mon-queues tr[data-queue="default"]')`)
	b.shot("monitoring-admin")
}

// tenantView signs in with a tenant's key: it sees none of the admin's
// tasks, and "admin only" on the deployment-wide monitoring views.
func tenantView(b *browser) {
	b.t.Helper()
	b.do("sign out", chromedp.Click(chromedp.ID("signout")))
	b.wait("the sign-in form", `!!document.querySelector('#signin') && sessionStorage.getItem('compute.apiKey') === null`)
	b.do("enter the tenant key", chromedp.SendKeys(chromedp.ID("apikey"), tenantKey), chromedp.Click(chromedp.ID("signin-submit")))
	b.wait("the tenant's empty list", `!!document.querySelector('#task-rows tr.empty') && document.querySelector('#who').textContent.includes('tenant')`)
	b.show("#/monitoring")
	b.wait("admin only", `['queues', 'workers', 'executors'].every((s) => document.querySelector('#mon-' + s).dataset.state === 'forbidden') && document.querySelector('#mon-tenants').dataset.state === 'ok'`)
	if !strings.Contains(eval[string](b, `document.querySelector('#mon-queues').textContent`), "Admin only") {
		b.t.Error("the tenant's queues view does not say it is admin only")
	}
	b.shot("monitoring-tenant")
}

// resumeStream checks the page's SSE reader: it follows the firehose with
// the key in a header, and after a drop it resumes with Last-Event-ID, so
// the events of a task made while it was away arrive, each once, in order.
func resumeStream(b *browser, base string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Evaluate[chromedp.Void](`(async () => {
	  const {EventStream} = await import('/ui/js/api.js');
	  window.__es = {ids: [], tasks: [], states: []};
	  window.__stream = new EventStream('/api/v1/events?task_type=echo', {
	    onEvent: (e) => { __es.ids.push(e.id); __es.tasks.push(e.data.task_id + ':' + e.data.status); },
	    onState: (s) => __es.states.push(s),
	  }).start();
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("starting a stream in the page: %v", err)
	}
	b.wait("the stream live", `__es.states.includes('live')`)
	echo := func(msg string) string {
		var task struct{ ID string }
		if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/tasks/", `{"task_type":"echo","message":"`+msg+`"}`, &task); code != 201 {
			b.t.Fatalf("create: %d", code)
		}
		return task.ID
	}
	first := echo("before the drop")
	b.wait("the first task's events", `__es.tasks.includes(`+jsString(first+":completed")+`)`)
	// Drop the connection and hold the reconnection for 2 s.
	eval[bool](b, `(__stream.backoff = 2000, __stream.ctrl.abort(), true)`)
	b.wait("the stream reconnecting", `__es.states[__es.states.length - 1] === 'reconnecting'`)
	second := echo("while away")
	var got struct{ Status string }
	for deadline := time.Now().Add(20 * time.Second); got.Status != "completed"; time.Sleep(20 * time.Millisecond) {
		if apiCall(b.t, adminKey, "GET", base+"/api/v1/tasks/"+second, "", &got); time.Now().After(deadline) {
			b.t.Fatalf("the echo task is %q", got.Status)
		}
	}
	if eval[string](b, `__es.states[__es.states.length - 1]`) != "reconnecting" {
		b.t.Fatal("the stream came back before the task finished; the drop proves nothing")
	}
	b.wait("the missed task's events", `__es.tasks.includes(`+jsString(second+":completed")+`)`)
	res := eval[struct {
		IDs   []int64  `json:"ids"`
		Tasks []string `json:"tasks"`
	}](b, `(__stream.close(), __es)`)
	for i := 1; i < len(res.IDs); i++ {
		if res.IDs[i] <= res.IDs[i-1] {
			b.t.Fatalf("event ids %v: not each once in order", res.IDs)
		}
	}
	for _, want := range []string{second + ":pending", second + ":executing", second + ":completed"} {
		if !contains(res.Tasks, want) {
			b.t.Errorf("events %v lack %s, sent while the stream was away", res.Tasks, want)
		}
	}
}

// openVideo renders a clip of the task's image (video_generation on the
// local executor, which needs ffmpeg) and plays its preview's metadata.
func openVideo(b *browser, base, imageTask string) {
	b.t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			b.t.Fatal("the video preview step needs ffmpeg in CI (.ci/run installs it)")
		}
		b.t.Log("no ffmpeg: the video preview is not checked")
		return
	}
	var task struct{ ID string }
	body := `{"task_type":"video_generation","image_url":"/api/v1/artifacts/tasks/` + imageTask + `/image.png","duration":1,"fps":8,"width":256,"height":192}`
	if code := apiCall(b.t, adminKey, "POST", base+"/api/v1/tasks/", body, &task); code != 201 {
		b.t.Fatalf("create: %d", code)
	}
	b.show("#/tasks/" + task.ID)
	video := `document.querySelector('#artifacts video')`
	b.wait("the clip's metadata", `!!`+video+` && `+video+`.readyState >= 1 && `+video+`.videoWidth === 256 && `+video+`.videoHeight === 192`)
	if src := eval[string](b, video+`.src`); !strings.HasPrefix(src, "blob:") {
		b.t.Errorf("the clip plays from %q, want a blob: URL", src)
	}
	b.shot("task-video")
}
