package config_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
)

// envVars are every variable FromEnv reads.
var envVars = []string{
	"COMPUTE_ADDR", "COMPUTE_METRICS_ADDR", "COMPUTE_DATA_DIR", "DATABASE_URL", "COMPUTE_API_KEY", "COMPUTE_PUBLIC_URL",
	"COMPUTE_MAX_BODY_BYTES", "COMPUTE_WORKERS", "COMPUTE_AUTO_MIGRATE", "COMPUTE_ALLOW_PRIVATE_URLS",
	"COMPUTE_SHUTDOWN_GRACE", "COMPUTE_LEASE", "COMPUTE_MAX_RESUMES", "COMPUTE_QUEUE_LIMITS", "COMPUTE_LOG_LEVEL", "COMPUTE_LOG_FORMAT",
	"COMPUTE_SSE_KEEPALIVE", "COMPUTE_ALLOW_PRIVATE_CIDRS", "COMPUTE_WEBHOOK_ALLOW_CIDRS", "COMPUTE_WEBHOOK_PER_DESTINATION",
	"COMPUTE_SSE_MAX_STREAMS_PER_KEY", "COMPUTE_SSE_MAX_REPLAYS_PER_KEY", "COMPUTE_EVENT_RETENTION",
	"COMPUTE_HTTP_WRITE_TIMEOUT", "COMPUTE_MAX_PAGE_BYTES", "COMPUTE_DB_LIST_CONNS",
	"COMPUTE_ARTIFACTS_URL", "COMPUTE_ARTIFACTS_PUBLIC_URL", "COMPUTE_ARTIFACT_RETENTION",
	"AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
}

// clearEnv blanks every variable FromEnv reads for the rest of the test;
// FromEnv treats an empty variable as unset.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, v := range envVars {
		t.Setenv(v, "")
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	want := config.Config{
		Addr:          "127.0.0.1:9000",
		DataDir:       "./data",
		MaxBodyBytes:  1 << 20,
		Workers:       8,
		AutoMigrate:   true,
		ShutdownGrace: 30 * time.Second,
		Lease:         30 * time.Second,
		MaxResumes:    3,
		LogLevel:      "info",
		LogFormat:     "text",

		WebhookRetryMin:    30 * time.Second,
		WebhookMaxAttempts: 15,
		WebhookWindow:      24 * time.Hour,
		RedisPrefix:        "compute",
		SSEKeepAlive:       15 * time.Second,

		WebhookPerDestination: 2,
		SSEMaxStreamsPerKey:   16,
		SSEMaxReplaysPerKey:   4,
		SSEMaxReplays:         runtime.GOMAXPROCS(0),
		HTTPWriteTimeout:      60 * time.Second,
		MaxPageBytes:          4 << 20,
		DBListConns:           4,
	}
	c := config.Default()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}
}

// FromEnv tests use t.Setenv and so cannot run in parallel.

func TestFromEnvEmptyIsDefault(t *testing.T) {
	clearEnv(t)
	c, err := config.FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if !reflect.DeepEqual(c, config.Default()) {
		t.Errorf("FromEnv() with no variables = %+v, want the defaults %+v", c, config.Default())
	}
}

func TestFromEnvReadsEachVariable(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  func(c *config.Config)
	}{
		{name: "COMPUTE_ADDR", value: "0.0.0.0:8080", want: func(c *config.Config) { c.Addr = "0.0.0.0:8080" }},
		{name: "COMPUTE_METRICS_ADDR", value: "127.0.0.1:9100", want: func(c *config.Config) { c.MetricsAddr = "127.0.0.1:9100" }},
		{name: "COMPUTE_DATA_DIR", value: "/var/lib/compute", want: func(c *config.Config) { c.DataDir = "/var/lib/compute" }},
		{name: "DATABASE_URL", value: "postgres://u@db/compute", want: func(c *config.Config) { c.DatabaseURL = "postgres://u@db/compute" }},
		{name: "COMPUTE_API_KEY", value: "0123456789abcdef0123", want: func(c *config.Config) { c.APIKey = "0123456789abcdef0123" }},
		{name: "COMPUTE_PUBLIC_URL", value: "https://compute.example.com", want: func(c *config.Config) { c.PublicURL = "https://compute.example.com" }},
		{name: "COMPUTE_MAX_BODY_BYTES", value: "2048", want: func(c *config.Config) { c.MaxBodyBytes = 2048 }},
		{name: "COMPUTE_WORKERS", value: "3", want: func(c *config.Config) { c.Workers = 3 }},
		{name: "COMPUTE_WORKERS zero", value: "0", want: func(c *config.Config) { c.Workers = 0 }},
		{name: "COMPUTE_AUTO_MIGRATE", value: "false", want: func(c *config.Config) { c.AutoMigrate = false }},
		{name: "COMPUTE_ALLOW_PRIVATE_URLS", value: "true", want: func(c *config.Config) { c.AllowPrivateURLs = true }},
		{name: "COMPUTE_ALLOW_PRIVATE_CIDRS", value: "10.20.0.0/16, ,fd00::/8", want: func(c *config.Config) {
			c.AllowPrivateCIDRs = []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00::/8")}
		}},
		{name: "COMPUTE_WEBHOOK_ALLOW_CIDRS", value: "192.168.1.0/24", want: func(c *config.Config) {
			c.WebhookAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
		}},
		{name: "COMPUTE_SHUTDOWN_GRACE", value: "1m30s", want: func(c *config.Config) { c.ShutdownGrace = 90 * time.Second }},
		{name: "COMPUTE_LEASE", value: "45s", want: func(c *config.Config) { c.Lease = 45 * time.Second }},
		{name: "COMPUTE_MAX_RESUMES", value: "7", want: func(c *config.Config) { c.MaxResumes = 7 }},
		{name: "COMPUTE_QUEUE_LIMITS", value: "gpu=2, default=50,,cpu=0", want: func(c *config.Config) {
			c.QueueLimits = map[string]int{"gpu": 2, "default": 50, "cpu": 0}
		}},
		{name: "COMPUTE_SSE_KEEPALIVE", value: "250ms", want: func(c *config.Config) { c.SSEKeepAlive = 250 * time.Millisecond }},
		{name: "COMPUTE_LOG_LEVEL", value: "debug", want: func(c *config.Config) { c.LogLevel = "debug" }},
		{name: "COMPUTE_LOG_FORMAT", value: "json", want: func(c *config.Config) { c.LogFormat = "json" }},
		{name: "COMPUTE_WEBHOOK_PER_DESTINATION", value: "4", want: func(c *config.Config) { c.WebhookPerDestination = 4 }},
		{name: "COMPUTE_ARTIFACTS_URL", value: "s3://bucket/compute", want: func(c *config.Config) { c.ArtifactsURL = "s3://bucket/compute" }},
		{name: "COMPUTE_ARTIFACTS_PUBLIC_URL", value: "https://cdn.example.com/c", want: func(c *config.Config) { c.ArtifactsPublicURL = "https://cdn.example.com/c" }},
		{name: "COMPUTE_ARTIFACT_RETENTION", value: "720h", want: func(c *config.Config) { c.ArtifactRetention = 720 * time.Hour }},
		{name: "AWS_REGION", value: "eu-west-3", want: func(c *config.Config) { c.S3Region = "eu-west-3" }},
		{name: "AWS_ENDPOINT_URL_S3", value: "http://minio:9000", want: func(c *config.Config) { c.S3Endpoint = "http://minio:9000" }},
		{name: "AWS_ACCESS_KEY_ID", value: "AKIA0", want: func(c *config.Config) { c.S3AccessKeyID = "AKIA0" }},
		{name: "AWS_SECRET_ACCESS_KEY", value: "secret", want: func(c *config.Config) { c.S3SecretAccessKey = "secret" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			variable, _, _ := strings.Cut(tt.name, " ")
			t.Setenv(variable, tt.value)
			got, err := config.FromEnv()
			if err != nil {
				t.Fatalf("FromEnv with %s=%q: %v", variable, tt.value, err)
			}
			want := config.Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("FromEnv with %s=%q = %+v, want %+v", variable, tt.value, got, want)
			}
		})
	}
}

func TestFromEnvBadValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		names []string
	}{
		{name: "max body bytes", env: map[string]string{"COMPUTE_MAX_BODY_BYTES": "1MB"}, names: []string{"COMPUTE_MAX_BODY_BYTES"}},
		{name: "workers", env: map[string]string{"COMPUTE_WORKERS": "eight"}, names: []string{"COMPUTE_WORKERS"}},
		{name: "auto migrate", env: map[string]string{"COMPUTE_AUTO_MIGRATE": "maybe"}, names: []string{"COMPUTE_AUTO_MIGRATE"}},
		{name: "allow private urls", env: map[string]string{"COMPUTE_ALLOW_PRIVATE_URLS": "yes please"}, names: []string{"COMPUTE_ALLOW_PRIVATE_URLS"}},
		{name: "allow private cidrs", env: map[string]string{"COMPUTE_ALLOW_PRIVATE_CIDRS": "10.20.0.0"}, names: []string{"COMPUTE_ALLOW_PRIVATE_CIDRS"}},
		{name: "shutdown grace without unit", env: map[string]string{"COMPUTE_SHUTDOWN_GRACE": "30"}, names: []string{"COMPUTE_SHUTDOWN_GRACE"}},
		{name: "lease", env: map[string]string{"COMPUTE_LEASE": "long"}, names: []string{"COMPUTE_LEASE"}},
		{name: "queue limits", env: map[string]string{"COMPUTE_QUEUE_LIMITS": "gpu:2"}, names: []string{"COMPUTE_QUEUE_LIMITS"}},
		{name: "sse keep-alive", env: map[string]string{"COMPUTE_SSE_KEEPALIVE": "15"}, names: []string{"COMPUTE_SSE_KEEPALIVE"}},
		{
			name:  "two bad values",
			env:   map[string]string{"COMPUTE_WORKERS": "many", "COMPUTE_SHUTDOWN_GRACE": "soon"},
			names: []string{"COMPUTE_WORKERS", "COMPUTE_SHUTDOWN_GRACE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := config.FromEnv()
			if err == nil {
				t.Fatalf("FromEnv with %v succeeded, want an error", tt.env)
			}
			for _, n := range tt.names {
				if !strings.Contains(err.Error(), n+"=") || !strings.Contains(err.Error(), `"`+tt.env[n]+`"`) {
					t.Errorf("error %q does not name %s and its value %q", err, n, tt.env[n])
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(c *config.Config)
		// want are the parts the error must contain: the setting's
		// variable first, then the value when shown.
		want []string
	}{
		{name: "valid defaults", mut: func(*config.Config) {}},
		{name: "valid everything set", mut: func(c *config.Config) {
			c.Addr, c.DatabaseURL, c.APIKey = ":9000", "postgresql://db/compute", "0123456789abcdef"
			c.PublicURL, c.MaxBodyBytes, c.Workers = "https://x.example/", 1024, 0
			c.LogLevel, c.LogFormat, c.ShutdownGrace = "error", "json", 0
			c.Lease, c.QueueLimits = time.Second, map[string]int{"gpu": 2, "cpu": 0}
			c.ArtifactsURL, c.ArtifactsPublicURL, c.ArtifactRetention = "s3://b/p", "https://cdn.example/p", 24*time.Hour
			c.S3Endpoint, c.S3AccessKeyID, c.S3SecretAccessKey = "http://127.0.0.1:7070", "k", "s"
		}},
		{name: "addr without port", mut: func(c *config.Config) { c.Addr = "localhost" }, want: []string{"COMPUTE_ADDR", `"localhost"`}},
		{name: "addr empty", mut: func(c *config.Config) { c.Addr = "" }, want: []string{"COMPUTE_ADDR"}},
		{name: "metrics addr without port", mut: func(c *config.Config) { c.MetricsAddr = "localhost" }, want: []string{"COMPUTE_METRICS_ADDR", `"localhost"`}},
		{name: "data dir empty", mut: func(c *config.Config) { c.DataDir = "" }, want: []string{"COMPUTE_DATA_DIR"}},
		{name: "database url not postgres", mut: func(c *config.Config) { c.DatabaseURL = "mysql://db/compute" }, want: []string{"DATABASE_URL"}},
		{name: "database url a file path", mut: func(c *config.Config) { c.DatabaseURL = "/tmp/compute.db" }, want: []string{"DATABASE_URL"}},
		{name: "api key too short", mut: func(c *config.Config) { c.APIKey = "0123456789abcde" }, want: []string{"COMPUTE_API_KEY", "16"}},
		{name: "public url relative", mut: func(c *config.Config) { c.PublicURL = "/compute" }, want: []string{"COMPUTE_PUBLIC_URL", `"/compute"`}},
		{name: "public url not http", mut: func(c *config.Config) { c.PublicURL = "ftp://x.example" }, want: []string{"COMPUTE_PUBLIC_URL"}},
		{name: "public url without host", mut: func(c *config.Config) { c.PublicURL = "http://" }, want: []string{"COMPUTE_PUBLIC_URL"}},
		{name: "max body bytes too small", mut: func(c *config.Config) { c.MaxBodyBytes = 1023 }, want: []string{"COMPUTE_MAX_BODY_BYTES", "1024"}},
		{name: "workers negative", mut: func(c *config.Config) { c.Workers = -1 }, want: []string{"COMPUTE_WORKERS"}},
		{name: "workers too many", mut: func(c *config.Config) { c.Workers = 10001 }, want: []string{"COMPUTE_WORKERS"}},
		{name: "shutdown grace negative", mut: func(c *config.Config) { c.ShutdownGrace = -time.Second }, want: []string{"COMPUTE_SHUTDOWN_GRACE"}},
		{name: "lease too short", mut: func(c *config.Config) { c.Lease = 999 * time.Millisecond }, want: []string{"COMPUTE_LEASE", "1s"}},
		{name: "negative resumes", mut: func(c *config.Config) { c.MaxResumes = -1 }, want: []string{"COMPUTE_MAX_RESUMES"}},
		{name: "queue limit negative", mut: func(c *config.Config) { c.QueueLimits = map[string]int{"gpu": -1} }, want: []string{"COMPUTE_QUEUE_LIMITS", `"gpu"=-1`}},
		{name: "queue limit without a name", mut: func(c *config.Config) { c.QueueLimits = map[string]int{"": 2} }, want: []string{"COMPUTE_QUEUE_LIMITS"}},
		{name: "sse keep-alive too short", mut: func(c *config.Config) { c.SSEKeepAlive = time.Millisecond }, want: []string{"COMPUTE_SSE_KEEPALIVE"}},
		{name: "log level unknown", mut: func(c *config.Config) { c.LogLevel = "verbose" }, want: []string{"COMPUTE_LOG_LEVEL", `"verbose"`}},
		{name: "webhook url relative", mut: func(c *config.Config) { c.WebhookURL = "/hooks" }, want: []string{"COMPUTE_WEBHOOK_URL"}},
		{name: "webhook url with credentials", mut: func(c *config.Config) { c.WebhookURL = "https://u:p@hooks.example/x" }, want: []string{"COMPUTE_WEBHOOK_URL", "credentials"}},
		{name: "webhook per destination zero", mut: func(c *config.Config) { c.WebhookPerDestination = 0 }, want: []string{"COMPUTE_WEBHOOK_PER_DESTINATION"}},
		{name: "artifacts url not s3", mut: func(c *config.Config) { c.ArtifactsURL = "gs://bucket" }, want: []string{"COMPUTE_ARTIFACTS_URL", `"gs://bucket"`}},
		{name: "artifacts url without bucket", mut: func(c *config.Config) { c.ArtifactsURL = "s3:///prefix" }, want: []string{"COMPUTE_ARTIFACTS_URL"}},
		{name: "artifacts public url relative", mut: func(c *config.Config) { c.ArtifactsPublicURL = "/files" }, want: []string{"COMPUTE_ARTIFACTS_PUBLIC_URL"}},
		{name: "s3 endpoint without scheme", mut: func(c *config.Config) { c.S3Endpoint = "minio:9000" }, want: []string{"AWS_ENDPOINT_URL_S3"}},
		{name: "s3 key without secret", mut: func(c *config.Config) { c.S3AccessKeyID = "AKIA0" }, want: []string{"AWS_SECRET_ACCESS_KEY"}},
		{name: "artifact retention too short", mut: func(c *config.Config) { c.ArtifactRetention = time.Minute }, want: []string{"COMPUTE_ARTIFACT_RETENTION", "1h"}},
		{name: "log format unknown", mut: func(c *config.Config) { c.LogFormat = "xml" }, want: []string{"COMPUTE_LOG_FORMAT", `"xml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			tt.mut(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil for %+v, want an error", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			// The setting as a user sets it, never the Go field's name.
			var se *config.SettingError
			if !errors.As(err, &se) || se.Setting != tt.want[0] || !strings.HasPrefix(err.Error(), "config: "+tt.want[0]) {
				t.Errorf("Validate() = %q (%T), want a *config.SettingError that starts with config: %s", err, err, tt.want[0])
			}
		})
	}
}

func TestDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		dataDir     string
		databaseURL string
		want        string
	}{
		{name: "sqlite in the data dir", dataDir: "/var/lib/compute", want: filepath.Join("/var/lib/compute", "compute.db")},
		{name: "sqlite relative", dataDir: "./data", want: filepath.Join("data", "compute.db")},
		{name: "postgres", dataDir: "/var/lib/compute", databaseURL: "postgres://u@db/compute", want: "postgres://u@db/compute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			c.DataDir, c.DatabaseURL = tt.dataDir, tt.databaseURL
			if got := c.DSN(); got != tt.want {
				t.Errorf("DSN() = %q, want %q", got, tt.want)
			}
			if got, want := c.ArtifactDir(), filepath.Join(tt.dataDir, "artifacts"); got != want {
				t.Errorf("ArtifactDir() = %q, want %q", got, want)
			}
		})
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		addr      string
		publicURL string
		want      string
		// wantWorker is AnnouncedBaseURL(false): a process without the API.
		wantWorker string
	}{
		{name: "from addr", addr: "127.0.0.1:9000", want: "http://127.0.0.1:9000"},
		{name: "host name", addr: "compute.internal:9000", want: "http://compute.internal:9000"},
		{name: "every interface", addr: "0.0.0.0:9000", want: ""},
		{name: "every interface v6", addr: "[::]:9000", want: ""},
		{name: "no host", addr: ":9000", want: ""},
		{name: "port chosen at bind time", addr: "127.0.0.1:0", want: ""},
		{name: "public url", addr: "127.0.0.1:9000", publicURL: "https://compute.example.com", want: "https://compute.example.com", wantWorker: "https://compute.example.com"},
		{name: "public url trailing slash", addr: "127.0.0.1:9000", publicURL: "https://compute.example.com/", want: "https://compute.example.com", wantWorker: "https://compute.example.com"},
		{name: "public url with path", addr: ":9000", publicURL: "https://example.com/compute/", want: "https://example.com/compute", wantWorker: "https://example.com/compute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := config.Default()
			c.Addr, c.PublicURL = tt.addr, tt.publicURL
			if got := c.BaseURL(); got != tt.want {
				t.Errorf("BaseURL() = %q, want %q", got, tt.want)
			}
			if got := c.AnnouncedBaseURL(true); got != tt.want {
				t.Errorf("AnnouncedBaseURL(true) = %q, want %q", got, tt.want)
			}
			if got := c.AnnouncedBaseURL(false); got != tt.wantWorker {
				t.Errorf("AnnouncedBaseURL(false) = %q, want %q", got, tt.wantWorker)
			}
		})
	}
}

func TestParseQueueLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    map[string]int
		wantErr string
	}{
		{name: "empty", in: "", want: map[string]int{}},
		{name: "one", in: "gpu=2", want: map[string]int{"gpu": 2}},
		{name: "several with spaces", in: " gpu = 2 , default=50 ", want: map[string]int{"gpu": 2, "default": 50}},
		{name: "zero removes", in: "gpu=0", want: map[string]int{"gpu": 0}},
		{name: "empty parts skipped", in: ",gpu=1,,", want: map[string]int{"gpu": 1}},
		{name: "last wins", in: "gpu=1,gpu=3", want: map[string]int{"gpu": 3}},
		{name: "no equals", in: "gpu", wantErr: `"gpu"`},
		{name: "negative", in: "gpu=-1", wantErr: `"gpu=-1"`},
		{name: "not a number", in: "default=50,gpu=two", wantErr: `"gpu=two"`},
		{name: "no queue name", in: "=2", wantErr: `"=2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.ParseQueueLimits(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseQueueLimits(%q) = %v, %v; want an error naming %s", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseQueueLimits(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}
