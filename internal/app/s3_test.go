package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/testutil/s3server"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

type taskResult struct {
	Status       string
	ErrorMessage string `json:"error_message"`
	Result       struct {
		Artifacts []struct{ Key, URL string }
	}
}

// waitResult polls a task's result until it is completed (failing the test
// on failed, or after 30 s).
func waitResult(t *testing.T, base, id string) taskResult {
	t.Helper()
	var res taskResult
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res = taskResult{}
		if code := call(t, "GET", base+"/api/v1/tasks/"+id+"/result", "", &res); code != 200 {
			t.Fatalf("result of %s: %d", id, code)
		}
		if res.Status == "completed" {
			return res
		}
		if res.Status == "failed" || res.Status == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("task %s is %s: %s", id, res.Status, res.ErrorMessage)
		}
	}
}

// files lists the regular files under dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestArtifactsAcrossMachines: with the artifact store on S3, `compute
// api` and two `compute worker`s, each on a data dir of its own (one
// PostgreSQL database), serve and read each other's artifacts: the API
// serves what worker A wrote, an image_adjuster on worker B reads worker
// A's generation output by its public URL, the result URLs come from the
// public base, nothing lands in a data dir, DELETE removes the objects and
// retention removes those of old tasks.
func TestArtifactsAcrossMachines(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	const public = "https://cdn.example.com/files"
	cfg := testserver.Config(t, "postgres", key)
	srv.Configure(&cfg, "deploy")
	cfg.ArtifactsPublicURL = public
	api, workerA, workerB := cfg, cfg, cfg
	api.Workers = 0
	workerA.DataDir, workerB.DataDir = t.TempDir(), t.TempDir()
	front := testserver.Start(t, api, app.Options{Version: "test"}, testdb.Logger(t))
	a := testserver.Start(t, workerA, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))

	var gen struct{ ID string }
	if code := call(t, "POST", front.Base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a dress","width":64,"height":64}`, &gen); code != 201 {
		t.Fatalf("create generation: %d", code)
	}
	res := waitResult(t, front.Base, gen.ID)
	if len(res.Result.Artifacts) != 1 {
		t.Fatalf("artifacts %+v", res.Result.Artifacts)
	}
	genKey := "tasks/" + gen.ID + "/image.png"
	if got := res.Result.Artifacts[0].URL; got != public+"/"+genKey {
		t.Fatalf("artifact URL %q, want it under the public base", got)
	}
	if keys := srv.Keys(t, "deploy/"); len(keys) != 1 || keys[0] != "deploy/"+genKey {
		t.Fatalf("bucket keys %v", keys)
	}
	if code := call(t, "GET", front.Base+"/api/v1/artifacts/"+genKey, "", nil); code != 200 {
		t.Fatalf("the API serves worker A's artifact: %d", code)
	}

	// Worker A goes away; worker B, on another data dir, reads its output.
	a.Stop()
	testserver.Start(t, workerB, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))
	var adj struct{ ID string }
	body := `{"task_type":"image_adjuster","image_url":"` + public + "/" + genKey + `","brightness":20}`
	if code := call(t, "POST", front.Base+"/api/v1/tasks/", body, &adj); code != 201 {
		t.Fatalf("create image_adjuster: %d", code)
	}
	res = waitResult(t, front.Base, adj.ID)
	if len(res.Result.Artifacts) != 1 || !strings.HasPrefix(res.Result.Artifacts[0].URL, public+"/tasks/"+adj.ID+"/") {
		t.Fatalf("image_adjuster artifacts %+v", res.Result.Artifacts)
	}
	adjKey := res.Result.Artifacts[0].Key
	if code := call(t, "GET", front.Base+"/api/v1/artifacts/"+adjKey, "", nil); code != 200 {
		t.Fatalf("the API serves worker B's artifact: %d", code)
	}
	for _, dir := range []string{api.DataDir, workerA.DataDir, workerB.DataDir} {
		if got := files(t, filepath.Join(dir, "artifacts")); len(got) != 0 {
			t.Errorf("artifacts on a local disk: %v", got)
		}
	}

	// DELETE removes the generation's objects and nothing else.
	if code := call(t, "DELETE", front.Base+"/api/v1/tasks/"+gen.ID, "", nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if keys := srv.Keys(t, "deploy/"); len(keys) != 1 || keys[0] != "deploy/"+adjKey {
		t.Fatalf("bucket keys after DELETE %v, want only %s", keys, adjKey)
	}

	// Retention removes the artifacts of tasks finished before its window,
	// once; the task stays, its artifact answers 404.
	ret, err := artifact.NewRetention(artifact.RetentionConfig{Keep: time.Hour}, front.App.Store, front.App.Artifacts, testdb.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, _, err := ret.Prune(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("a pass within the window removed %d tasks' artifacts: %v", n, err)
	}
	if n, objs, err := ret.Prune(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 1 || objs != 1 {
		t.Fatalf("a pass after the window: %d tasks, %d objects, %v", n, objs, err)
	}
	if keys := srv.Keys(t, "deploy/"); len(keys) != 0 {
		t.Fatalf("bucket keys after retention %v", keys)
	}
	if n, _, err := ret.Prune(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 0 {
		t.Fatalf("a second pass handled %d tasks again: %v", n, err)
	}
	if code := call(t, "GET", front.Base+"/api/v1/tasks/"+adj.ID, "", nil); code != 200 {
		t.Errorf("the task after retention: %d", code)
	}
	if code := call(t, "GET", front.Base+"/api/v1/artifacts/"+adjKey, "", nil); code != 404 {
		t.Errorf("its artifact after retention: %d", code)
	}
}

// TestArtifactBucketCheckedAtStart: a process whose bucket does not exist
// (or whose credentials are refused) stops at start with S3's answer.
func TestArtifactBucketCheckedAtStart(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	for _, tc := range []struct{ name, bucket, secret string }{
		{"missing bucket", "no-such-bucket", s3server.SecretKey},
		{"wrong secret", srv.Bucket, "not-the-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, "sqlite", key)
			srv.Configure(&cfg, "")
			cfg.ArtifactsURL, cfg.S3SecretAccessKey = "s3://"+tc.bucket, tc.secret
			a, err := app.New(context.Background(), cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))
			if err == nil {
				a.Close()
				t.Fatal("the process started")
			}
			if !strings.Contains(err.Error(), "checking the artifact bucket") {
				t.Errorf("error %v does not say the bucket check failed", err)
			}
		})
	}
}
