package deploy_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads compose.yaml as Docker Compose does (compose-go, the
// Compose specification's reference loader: its JSON Schema, YAML merge
// keys, ${VAR:-default} interpolation), with env as the only environment.
func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	return loadComposeFile(t, filepath.Join(root, "compose.yaml"), env)
}

// loadComposeFile loads one Compose file as loadCompose does.
func loadComposeFile(t *testing.T, path string, env map[string]string) (*types.Project, error) {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithWorkingDirectory(filepath.Dir(abs)), cli.WithName("compute"), cli.WithEnv(list), cli.WithDiscardEnvFile)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func mustCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, map[string]string{"COMPUTE_API_KEY": testKey})
	if err != nil {
		t.Fatalf("loading compose.yaml: %v", err)
	}
	return p
}

// computeServices are the services that run the compute image.
var computeServices = []string{"bucket", "api", "worker"}

// env returns a service's environment as a map (unset values as "").
func env(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

// TestComposeFile checks compose.yaml against the Compose schema and
// against the rest of the project: the compute services build this
// Dockerfile and set only variables internal/config reads; the URLs
// between services agree with the services they name; health checks and
// start order are complete.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	if _, err := loadCompose(t, nil); err == nil || !strings.Contains(err.Error(), "COMPUTE_API_KEY") {
		t.Errorf("without COMPUTE_API_KEY: %v, want an error naming it", err)
	}
	p := mustCompose(t)
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"api", "bucket", "postgres", "redis", "s3", "worker"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	configSrc, err := os.ReadFile(filepath.Join(root, "internal", "config", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	df := loadDockerfile(t)
	runtime := df.stages[len(df.stages)-1]
	entry := runtime.all("ENTRYPOINT")[0].execForm(t)[0]
	image := ""
	for _, name := range computeServices {
		s := p.Services[name]
		if s.Build == nil || s.Build.Context != mustAbs(t, root) || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: build %+v, want the repository's Dockerfile", name, s.Build)
		}
		if image == "" {
			image = s.Image
		} else if s.Image != image {
			t.Errorf("%s: image %q, want the one image %q", name, s.Image, image)
		}
		for k := range s.Environment {
			if !strings.Contains(string(configSrc), `"`+k+`"`) {
				t.Errorf("%s sets %s, which internal/config does not read", name, k)
			}
		}
		if len(s.Command) == 0 {
			t.Errorf("%s has no command", name)
		}
	}

	pg, redis, s3 := env(p.Services["postgres"]), p.Services["redis"], p.Services["s3"]
	s3env := env(s3)
	s3port := ""
	for i, a := range s3.Command {
		if a == "--port" && i+1 < len(s3.Command) {
			_, s3port, _ = strings.Cut(s3.Command[i+1], ":")
		}
	}
	for _, name := range computeServices {
		e := env(p.Services[name])
		db, err := url.Parse(e["DATABASE_URL"])
		if err != nil {
			t.Fatalf("%s: DATABASE_URL: %v", name, err)
		}
		pass, _ := db.User.Password()
		if db.Host != "postgres:5432" || db.User.Username() != pg["POSTGRES_USER"] || pass != pg["POSTGRES_PASSWORD"] || db.Path != "/"+pg["POSTGRES_DB"] {
			t.Errorf("%s: DATABASE_URL %s does not match the postgres service's user, password and database", name, e["DATABASE_URL"])
		}
		if r, err := url.Parse(e["REDIS_URL"]); err != nil || r.Hostname() != redis.Name {
			t.Errorf("%s: REDIS_URL %s does not name the redis service", name, e["REDIS_URL"])
		}
		if e["AWS_ENDPOINT_URL_S3"] != "http://s3:"+s3port {
			t.Errorf("%s: AWS_ENDPOINT_URL_S3 %s, want the s3 service's port %s", name, e["AWS_ENDPOINT_URL_S3"], s3port)
		}
		if e["AWS_ACCESS_KEY_ID"] != s3env["ROOT_ACCESS_KEY"] || e["AWS_SECRET_ACCESS_KEY"] != s3env["ROOT_SECRET_KEY"] || e["AWS_ACCESS_KEY_ID"] == "" {
			t.Errorf("%s: the S3 credentials differ from the s3 service's root keys", name)
		}
		if !strings.HasPrefix(e["COMPUTE_ARTIFACTS_URL"], "s3://") {
			t.Errorf("%s: COMPUTE_ARTIFACTS_URL %q is not a bucket", name, e["COMPUTE_ARTIFACTS_URL"])
		}
	}

	// Start order: api and worker wait for a healthy database and Redis
	// and for the bucket; the bucket for a healthy S3 server.
	want := map[string]map[string]string{
		"bucket": {"s3": types.ServiceConditionHealthy},
		"api":    {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "bucket": types.ServiceConditionCompletedSuccessfully},
		"worker": {"postgres": types.ServiceConditionHealthy, "redis": types.ServiceConditionHealthy, "bucket": types.ServiceConditionCompletedSuccessfully},
	}
	for name, deps := range want {
		got := map[string]string{}
		for dep, d := range p.Services[name].DependsOn {
			got[dep] = d.Condition
		}
		if !mapsEqual(got, deps) {
			t.Errorf("%s depends on %v, want %v", name, got, deps)
		}
	}
	for name, s := range p.Services {
		if name == "bucket" {
			if s.Restart != "no" {
				t.Errorf("bucket restarts (%q): a one-shot must not", s.Restart)
			}
			continue
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" {
			t.Errorf("%s: healthcheck %+v, want an exec-form CMD", name, s.HealthCheck)
		}
	}
	for _, name := range []string{"api", "worker"} {
		if hc := p.Services[name].HealthCheck.Test; hc[1] != entry || hc[2] != "healthcheck" {
			t.Errorf("%s: healthcheck %v, want %s healthcheck (the image has no shell)", name, hc, entry)
		}
	}
	api, worker := p.Services["api"], p.Services["worker"]
	_, imagePort, _ := strings.Cut(envOf(t, runtime)["COMPUTE_ADDR"], ":")
	if len(api.Ports) != 1 || api.Ports[0].Target != mustPort(t, imagePort) {
		t.Errorf("api publishes %+v, want the image's port %s", api.Ports, imagePort)
	} else {
		// On loopback by default, and the artifact URLs' origin is the
		// CLI's default URL, to which the key is sent.
		pub := api.Ports[0]
		if pub.HostIP != "127.0.0.1" {
			t.Errorf("api publishes port %s on %q, want 127.0.0.1 (loopback) by default", pub.Published, pub.HostIP)
		}
		for _, s := range []types.ServiceConfig{api, worker} {
			if got, want := env(s)["COMPUTE_PUBLIC_URL"], "http://127.0.0.1:"+pub.Published; got != want {
				t.Errorf("%s: COMPUTE_PUBLIC_URL %q, want %q (the CLI's default URL)", s.Name, got, want)
			}
		}
	}
	if _, ok := env(api)["COMPUTE_API_KEY"]; !ok {
		t.Error("api has no COMPUTE_API_KEY")
	}
	if worker.GetScale() < 2 {
		t.Errorf("worker runs %d replicas, want at least 2", worker.GetScale())
	}
	_, metricsPort, _ := strings.Cut(env(worker)["COMPUTE_METRICS_ADDR"], ":")
	if hc := strings.Join(worker.HealthCheck.Test, " "); metricsPort == "" || !regexp.MustCompile(`:`+metricsPort+`/metrics\b`).MatchString(hc) {
		t.Errorf("the worker's healthcheck %q does not ask its COMPUTE_METRICS_ADDR port %s", hc, metricsPort)
	}
}

// TestComposeLoaderRejects shows the loader TestComposeFile relies on
// refuses what Compose refuses, so its passing means something.
func TestComposeLoaderRejects(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown key", "services:\n  a:\n    image: x\n    healthcheck_test: [CMD, true]\n", "healthcheck_test"},
		{"bad condition", "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_ready\n  b:\n    image: y\n", "condition"},
		{"missing dependency", "services:\n  a:\n    image: x\n    depends_on: [c]\n", `undefined service "c"`},
		{"required variable", "services:\n  a:\n    image: ${IMAGE:?set IMAGE}\n", "set IMAGE"},
	} {
		path := filepath.Join(t.TempDir(), "compose.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadComposeFile(t, path, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func mustPort(t *testing.T, s string) uint32 {
	t.Helper()
	var n uint32
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("port %q", s)
		}
		n = n*10 + uint32(r-'0')
	}
	return n
}
