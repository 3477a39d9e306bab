package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/chromium"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// The browser test drives the dashboard in headless Chromium (Debian's
// chromium, found on the PATH or through COMPUTE_TEST_CHROMIUM) against a
// real server on SQLite whose mock executor takes a few seconds per
// image, so progress is seen live. It writes a PNG screenshot of each step
// into COMPUTE_SCREENSHOTS, or test-screenshots/ at the module's root.
// Without a browser it is skipped, except under CI=true, where it fails.

const tenantKey = "dashboard-test-tenant-key-0123456789"

// stepDelay is the mock's pause before each of its four progress steps.
const stepDelay = "800ms"

// screenshotDir is COMPUTE_SCREENSHOTS or test-screenshots/ at the root
// of the module, emptied of earlier PNGs.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COMPUTE_SCREENSHOTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "test-screenshots")
				break
			}
			if filepath.Dir(d) == d {
				dir = filepath.Join(wd, "test-screenshots")
				break
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return dir
}

// browser is one headless tab with the helpers of the test.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
	n     int
	base  string
	// receiver is the URL of the webhook receiver.
	receiver string

	mu       sync.Mutex
	problems []string // exceptions and CSP reports from the page
}

// do runs actions, failing the test with what they were for.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript condition in the page until it is true; an
// exception (an element not there yet) counts as false.
func (b *browser) wait(what, cond string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](`(() => { try { return `+cond+`; } catch (_) { return false; } })()`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// clear empties an input.
func (b *browser) clear(id string) {
	b.t.Helper()
	b.do("clear #"+id, chromedp.Evaluate[chromedp.Void](`document.getElementById(`+jsString(id)+`).value = ''`))
}

// show goes to a view of the page by its hash, without a reload.
func (b *browser) show(hash string) {
	b.t.Helper()
	b.do("go to "+hash, chromedp.Evaluate[chromedp.Void](`location.hash = `+jsString(hash)))
}

func jsString(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

// eval evaluates an expression into out.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page PNG, numbered in order.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

// apiCall sends a request with a key (and a JSON body, unless empty) and
// decodes the answer into out (when not nil); it returns the status.
func apiCall(t *testing.T, key, method, url, body string, out any) int {
	t.Helper()
	header := http.Header{"Authorization": {"Bearer " + key}}
	if body != "" {
		header.Set("Content-Type", "application/json")
	}
	res, raw := send(t, method, url, body, header)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode
}

// record installs, once per page load, a MutationObserver that notes
// every status and progress the page shows for the task page and the list
// rows, and a marker that a reload would lose.
const record = `(() => {
  window.__loaded = window.__loaded || Date.now();
  window.__rec = {status: [], progress: [], rows: {}};
  if (window.__observer) return true;
  const push = (a, v) => { if (a[a.length - 1] !== v) a.push(v); };
  window.__observer = new MutationObserver(() => {
    const st = document.querySelector('#task-status [data-status]');
    if (st) push(__rec.status, st.dataset.status);
    const p = document.querySelector('#task-progress');
    if (p && p.dataset.value !== undefined) push(__rec.progress, Number(p.dataset.value));
    for (const tr of document.querySelectorAll('tr.task-row')) {
      push(__rec.rows[tr.dataset.taskId] ||= [], tr.dataset.status + ':' + tr.querySelector('.progress').dataset.value);
    }
  });
  __observer.observe(document.body, {subtree: true, childList: true, attributes: true});
  return true;
})()`

func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium.Path(t)
	shots := screenshotDir(t)

	// A webhook receiver on loopback, counting what it is sent.
	var hooks atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	cfg := testserver.Config(t, "sqlite", adminKey)
	cfg.WebhookAllowPrivate = true
	cfg.Executors = map[string]config.ExecutorEntry{
		"mock":  {Type: "mock", Settings: json.RawMessage(`{"step_delay":"` + stepDelay + `"}`)},
		"local": {Type: "local", Settings: json.RawMessage(`{}`)},
	}
	srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t))
	if err := srv.App.Store.CreateAPIKey(context.Background(), apikey.Record(tenantKey, "dashboard test tenant", "acme")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.WindowSize(1360, 900),
		chromedp.Flag("lang", "en-US"), chromedp.UserDataDir(t.TempDir()))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run its sandbox as root
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	b := &browser{t: t, ctx: bctx, shots: shots, base: srv.Base, receiver: receiver.URL + "/hook"}

	console := chromedp.Console(bctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("the page reported: %s", p)
		}
	})

	signIn(b, adminKey)
	resumeStream(b, srv.Base)
	created := createFromForm(b)
	watchList(b, srv.Base)
	openArtifact(b, created)
	redeliver(b, created, &hooks)
	openVideo(b, srv.Base, created)
	cancelTask(b, srv.Base)
	workflowGraph(b, srv.Base)
	monitoring(b)
	tenantView(b)
}

// signIn loads the page, is refused a wrong key, and signs in.
func signIn(b *browser, key string) {
	b.t.Helper()
	b.do("open the dashboard", chromedp.Navigate(b.base+"/"))
	b.wait("the sign-in form", `!!document.querySelector('#signin')`)
	b.shot("sign-in")
	b.do("enter a wrong key", chromedp.SendKeys(chromedp.ID("apikey"), "csk_not-a-key-at-all-0000"), chromedp.Click(chromedp.ID("signin-submit")))
	b.wait("the refusal", `(document.querySelector('#signin-error') || {}).textContent.includes('not valid')`)
	b.clear("apikey")
	b.do("enter the key", chromedp.SendKeys(chromedp.ID("apikey"), key), chromedp.Click(chromedp.ID("signin-submit")))
	b.wait("the task list", `!!document.querySelector('#tasks') && !document.querySelector('#nav').hidden`)
	if url := eval[string](b, `location.href`); strings.Contains(url, key) {
		b.t.Fatalf("the key is in the URL %s", url)
	}
	if stored := eval[string](b, `sessionStorage.getItem('compute.apiKey')`); stored != key {
		b.t.Fatalf("sessionStorage holds %q", stored)
	}
	if local := eval[int](b, `localStorage.length`); local != 0 {
		b.t.Fatalf("localStorage holds %d items; the key must stay in the session", local)
	}
	eval[bool](b, record)
}

// createFromForm fills the generation form, submits it and watches the
// task page go from executing to completed without a reload.
func createFromForm(b *browser) string {
	b.t.Helper()
	b.show("#/new")
	b.wait("the type picker", `!!document.querySelector('.type-card[data-type="generation"]')`)
	b.do("choose generation", chromedp.Click(chromedp.CSS(`.type-card[data-type="generation"]`)))
	b.wait("the generated form", `!!document.querySelector('#create-form #f-prompt') && !!document.querySelector('#f-width')`)
	// A bad value first: the server's 422 is shown at its field.
	b.do("fill a bad width", chromedp.SendKeys(chromedp.ID("f-prompt"), "a red summer dress, studio light"),
		chromedp.SendKeys(chromedp.ID("f-width"), "100"), chromedp.SendKeys(chromedp.ID("f-height"), "384"),
		chromedp.Click(chromedp.ID("create-submit")))
	b.wait("the width's error", `(document.querySelector('#err-width') || {}).textContent.includes('multiple of 8')`)
	b.shot("create-form-422")
	b.clear("f-width")
	b.do("fix the width", chromedp.SendKeys(chromedp.ID("f-width"), "512"))
	b.do("open the options", chromedp.Click(chromedp.CSS(`details.options summary`)))
	b.do("set a webhook", chromedp.SendKeys(chromedp.ID("f-webhook_url"), b.receiver))
	b.shot("create-form")
	eval[bool](b, record)
	b.do("submit", chromedp.Click(chromedp.ID("create-submit")))
	b.wait("the task page", `/^#\/tasks\/[0-9a-f-]{36}$/.test(location.hash) && !!document.querySelector('#task-status [data-status]')`)
	id := eval[string](b, `location.hash.slice('#/tasks/'.length)`)
	b.wait("progress between 0 and 100", `__rec.progress.some((v) => v > 0 && v < 100)`)
	b.shot("task-executing")
	b.wait("completion", `document.querySelector('#task-status [data-status]').dataset.status === 'completed'`)
	b.wait("the result", `!!document.querySelector('#artifacts .artifact')`)
	rec := eval[struct {
		Status   []string `json:"status"`
		Progress []int    `json:"progress"`
		Loaded   float64  `json:"loaded"`
	}](b, `({...__rec, loaded: window.__loaded})`)
	if !contains(rec.Status, "executing") || rec.Status[len(rec.Status)-1] != "completed" {
		b.t.Errorf("the task page showed statuses %v, want executing then completed", rec.Status)
	}
	if rec.Loaded == 0 {
		b.t.Error("the page was reloaded (its marker is gone)")
	}
	events := eval[int](b, `document.querySelectorAll('#timeline .ev-progress').length`)
	if events < 3 {
		b.t.Errorf("the timeline shows %d progress events, want the mock's steps", events)
	}
	return id
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
