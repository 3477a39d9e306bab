package deploy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/computeserver/compute/internal/testutil/s3server"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testredis"
)

// topology is the Compose project run as native processes: the address
// each container port is reached at here, and each service's processes.
type topology struct {
	t       *testing.T
	project *types.Project
	bin     string
	cred    *syscall.Credential
	runtime stage
	// hosts maps "service:port" (as the containers see each other) and
	// "localhost:port" and "127.0.0.1:port" (a published port) to a
	// loopback address here.
	hosts map[string]string
	// databaseURL replaces DATABASE_URL: the machine's PostgreSQL, in a
	// schema of this test's own (its role and password are not the
	// postgres service's).
	databaseURL string
	// prefix keeps this test's Redis channels apart from other tests'.
	prefix  string
	procs   map[string][]*proc
	healthy map[string]bool
	done    map[string]bool // one-shot services that exited 0
	// addrs are each process's own addresses, by "service/replica".
	listen map[string]map[string]string
}

// TestComposeTopology runs compose.yaml's services as native processes:
// versitygw with the s3 service's command, the machine's PostgreSQL and
// Redis for their services, and the compute image's services (bucket,
// api, the worker's replicas) from the binary built as the Dockerfile
// does, with their commands, the image's ENV and the file's environment,
// as the image's non-root user, in the file's dependency order and
// conditions, each waited healthy by its own healthcheck. Then a task
// created through the api runs on a worker, its artifact lands in the
// bucket, and both workers are listed up by the monitoring route.
func TestComposeTopology(t *testing.T) {
	t.Parallel()
	vgw, err := s3server.Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("versitygw is required in CI: %v", err)
		}
		t.Skipf("%v; skipping the Compose topology", err)
	}
	pgURL := testdb.URL(t, "postgres")
	redisURL := testredis.URL(t)
	ru, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	df := loadDockerfile(t)
	top := &topology{
		t: t, project: mustCompose(t), bin: binary(t), cred: runAs(t), runtime: df.stages[len(df.stages)-1],
		hosts: map[string]string{}, databaseURL: pgURL, prefix: testredis.Prefix(t),
		procs: map[string][]*proc{}, healthy: map[string]bool{}, done: map[string]bool{}, listen: map[string]map[string]string{},
	}
	top.hosts["redis:6379"] = ru.Host

	for _, name := range top.order() {
		top.checkDependencies(name)
		switch name {
		case "postgres", "redis":
			// The machine's servers, reached above (testdb, testredis):
			// their images and health checks do not run here.
			top.healthy[name] = true
		case "s3":
			top.startS3(vgw)
		default:
			top.startCompute(name)
		}
	}

	api := "http://" + top.hosts["localhost:9000"]
	id := createTask(t, api, `{"task_type":"generation","prompt":"a compose topology","seed":7,"width":256,"height":256}`)
	waitFor(t, "the task to complete on a worker", 90*time.Second, nil, func(ctx context.Context) error {
		return taskStatus(ctx, api, id, "completed")
	})
	top.checkArtifact(api, id)
	top.checkWorkers(api, id)

	// docker compose down: SIGTERM, each exits 0 within its grace.
	for _, name := range []string{"worker", "api"} {
		for _, p := range top.procs[name] {
			p.stop(t)
			if _, err := p.exited(); err != nil {
				t.Errorf("%s exited with %v after SIGTERM", p.name, err)
			}
		}
	}
}

// order lists the services so that each comes after what it depends on.
func (top *topology) order() []string {
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		var deps []string
		for dep := range top.project.Services[name].DependsOn {
			deps = append(deps, dep)
		}
		slices.Sort(deps)
		for _, dep := range deps {
			visit(dep)
		}
		out = append(out, name)
	}
	var names []string
	for name := range top.project.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		visit(name)
	}
	return out
}

// checkDependencies fails unless each dependency of the service meets its
// condition, as Compose waits for them.
func (top *topology) checkDependencies(name string) {
	t := top.t
	for dep, d := range top.project.Services[name].DependsOn {
		switch d.Condition {
		case types.ServiceConditionHealthy:
			if !top.healthy[dep] {
				t.Fatalf("%s needs %s healthy, and it is not", name, dep)
			}
		case types.ServiceConditionCompletedSuccessfully:
			if !top.done[dep] {
				t.Fatalf("%s needs %s completed, and it is not", name, dep)
			}
		case types.ServiceConditionStarted:
			if len(top.procs[dep]) == 0 && !top.healthy[dep] {
				t.Fatalf("%s needs %s started", name, dep)
			}
		default:
			t.Fatalf("%s: depends_on %s with condition %q", name, dep, d.Condition)
		}
	}
}

// rewrite maps what a container would reach to what this test reaches:
// other services' host:port and published ports.
func (top *topology) rewrite(v string) string {
	for from, to := range top.hosts {
		v = strings.ReplaceAll(v, from, to)
	}
	return v
}

// startS3 runs versitygw with the s3 service's command and environment,
// its volume a directory of the test's, on a loopback port.
func (top *topology) startS3(vgw string) {
	t := top.t
	s := top.project.Services["s3"]
	addr := freeAddr(t)
	volumes := map[string]string{}
	for _, v := range s.Volumes {
		volumes[v.Target] = t.TempDir()
	}
	argv := []string{vgw}
	port := ""
	for i, a := range s.Command {
		if i > 0 && s.Command[i-1] == "--port" {
			_, port, _ = strings.Cut(a, ":")
			a = addr
		}
		if dir, ok := volumes[a]; ok {
			a = dir
		}
		argv = append(argv, a)
	}
	if port == "" {
		t.Fatalf("the s3 service's command %v has no --port", s.Command)
	}
	top.hosts["s3:"+port] = addr
	var envList []string
	for k, v := range env(s) {
		envList = append(envList, k+"="+v)
	}
	p := start(t, "s3", argv, envList, nil)
	top.procs["s3"] = []*proc{p}
	hc := s.HealthCheck.Test
	if len(hc) < 3 || hc[1] != "wget" {
		t.Fatalf("the s3 healthcheck %v is not the wget this test reproduces", hc)
	}
	target := strings.Replace(hc[len(hc)-1], "127.0.0.1:"+port, addr, 1)
	waitFor(t, "the s3 service's healthcheck", 30*time.Second, p, func(ctx context.Context) error {
		return get(ctx, target)
	})
	top.healthy["s3"] = true
}

// containerEnv is one compute container's environment: the image's ENV,
// then the service's, with addresses mapped here and the settings a
// container has on its own (its data volume, its listen addresses).
func (top *topology) containerEnv(name string, own map[string]string) []string {
	t := top.t
	e := envOf(t, top.runtime)
	for k, v := range env(top.project.Services[name]) {
		e[k] = top.rewrite(v)
	}
	for k, v := range own {
		e[k] = v
	}
	if _, ok := e["DATABASE_URL"]; ok {
		e["DATABASE_URL"] = top.databaseURL
	}
	e["COMPUTE_REDIS_PREFIX"] = top.prefix
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// startCompute runs a service of the compute image: each replica its own
// data directory (the image's anonymous /data volume) and listen
// addresses, as the image's user; a one-shot is waited until it exits 0,
// the others until their healthcheck passes.
func (top *topology) startCompute(name string) {
	t := top.t
	s := top.project.Services[name]
	imageEnv := envOf(t, top.runtime)
	for i := range s.GetScale() {
		replica := fmt.Sprintf("%s-%d", name, i+1)
		own := map[string]string{"COMPUTE_DATA_DIR": dataDir(t, top.cred), "COMPUTE_ADDR": freeAddr(t)}
		hosts := map[string]string{} // this container's own loopback ports
		_, imagePort, _ := strings.Cut(imageEnv["COMPUTE_ADDR"], ":")
		hosts["127.0.0.1:"+imagePort] = own["COMPUTE_ADDR"]
		for _, p := range s.Ports {
			if fmt.Sprint(p.Target) == imagePort {
				// The host reaches a published port by either name.
				top.hosts["localhost:"+p.Published] = own["COMPUTE_ADDR"]
				top.hosts["127.0.0.1:"+p.Published] = own["COMPUTE_ADDR"]
			}
		}
		if m := env(s)["COMPUTE_METRICS_ADDR"]; m != "" {
			_, port, _ := strings.Cut(m, ":")
			own["COMPUTE_METRICS_ADDR"] = freeAddr(t)
			hosts["127.0.0.1:"+port] = own["COMPUTE_METRICS_ADDR"]
		}
		top.listen[replica] = own
		envList := top.containerEnv(name, own)
		argv := append(imageEntrypoint(t, top.runtime, top.bin), s.Command...)
		p := start(t, replica, argv, envList, top.cred)
		top.procs[name] = append(top.procs[name], p)
		if s.Restart == "no" {
			select {
			case <-p.done:
			case <-time.After(90 * time.Second):
				t.Fatalf("%s did not finish within 90s", replica)
			}
			if p.err != nil {
				t.Fatalf("%s exited with %v: %s", replica, p.err, p.out.tail(4000))
			}
			continue
		}
		if s.HealthCheck == nil {
			t.Fatalf("%s has no healthcheck", name)
		}
		hc := append([]string{top.bin}, s.HealthCheck.Test[2:]...)
		for j := range hc {
			for from, to := range hosts {
				hc[j] = strings.ReplaceAll(hc[j], from, to)
			}
		}
		waitFor(t, replica+"'s healthcheck", 90*time.Second, p, func(ctx context.Context) error {
			return runCheck(ctx, hc, envList, top.cred)
		})
		p.checkUser(t, top.cred)
	}
	if s.Restart == "no" {
		top.done[name] = true
	} else {
		top.healthy[name] = true
	}
}

// checkArtifact finds the task's artifact in the bucket, with the
// credentials and bucket compose.yaml gives the compute services, and
// downloads it through the api with the same content.
func (top *topology) checkArtifact(api, id string) {
	t := top.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res struct {
		Result struct {
			Artifacts []struct {
				Key, URL, SHA256 string
				Size             int64
			}
		}
	}
	if code, err := apiGet(ctx, api+"/api/v1/tasks/"+id+"/result", &res); err != nil || code != 200 || len(res.Result.Artifacts) == 0 {
		t.Fatalf("the task's result: %d %v %+v", code, err, res)
	}
	a := res.Result.Artifacts[0]
	e := env(top.project.Services["worker"])
	bu, err := url.Parse(e["COMPUTE_ARTIFACTS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	client := s3.New(s3.Options{
		Region: e["AWS_REGION"], BaseEndpoint: aws.String(top.rewrite(e["AWS_ENDPOINT_URL_S3"])), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"], ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	key := strings.TrimPrefix(bu.Path, "/") + "/" + a.Key
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bu.Host), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("the artifact is not in the bucket at s3://%s/%s: %v", bu.Host, key, err)
	}
	inBucket, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(inBucket)
	if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(inBucket)) != a.Size {
		t.Fatalf("the bucket's object (%d bytes) is not the artifact the result describes (%d bytes, sha256 %s)", len(inBucket), a.Size, a.SHA256)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", a.URL, nil)
	if !strings.HasPrefix(a.URL, "http") {
		t.Fatalf("artifact URL %q: want an absolute URL (COMPUTE_PUBLIC_URL)", a.URL)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("downloading %s: %v", a.URL, err)
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil || r.StatusCode != 200 || string(body) != string(inBucket) {
		t.Fatalf("downloading %s through the api: %d, %d bytes, %v", a.URL, r.StatusCode, len(body), err)
	}
}

// checkWorkers checks the monitoring route lists every worker replica up
// (and the api), and that a worker ran the task.
func (top *topology) checkWorkers(api, id string) {
	t := top.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mon struct {
		Workers []struct {
			Instance, Role string
			Up             bool
		}
	}
	if code, err := apiGet(ctx, api+"/api/v1/monitoring/workers", &mon); err != nil || code != 200 {
		t.Fatalf("GET /api/v1/monitoring/workers: %d %v", code, err)
	}
	roles := map[string][]string{}
	for _, w := range mon.Workers {
		if w.Up {
			roles[w.Role] = append(roles[w.Role], w.Instance)
		}
	}
	worker := top.project.Services["worker"]
	replicas := worker.GetScale()
	if len(roles["worker"]) != replicas || len(roles["api"]) != 1 {
		t.Fatalf("processes up: %v; want %d workers and the api", roles, replicas)
	}
	var task struct {
		ExecutorInstance string `json:"executor_instance"`
	}
	if code, err := apiGet(ctx, api+"/api/v1/tasks/"+id, &task); err != nil || code != 200 {
		t.Fatalf("GET the task: %d %v", code, err)
	}
	if !slices.Contains(roles["worker"], task.ExecutorInstance) {
		t.Errorf("the task ran on %q, not on a worker %v", task.ExecutorInstance, roles["worker"])
	}
}

func apiGet(ctx context.Context, u string, into any) (int, error) {
	return api(ctx, "GET", u, "", into)
}

// get fails unless GET u answers 2xx.
func get(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return nil
}
