// Package config holds the server's configuration: one struct, its
// defaults, how it is read from the environment, and its validation.
// Flags in cmd/compute override the environment.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/netguard"
)

// Config is the whole configuration of a compute process.
type Config struct {
	// Addr is the HTTP listen address (COMPUTE_ADDR, default
	// 127.0.0.1:9000).
	Addr string `yaml:"addr"`
	// MetricsAddr, when set, is a listen address serving only GET
	// /metrics (COMPUTE_METRICS_ADDR): the worker role's metrics, or an
	// API process's on an internal port. Empty: /metrics is served beside
	// the API only.
	MetricsAddr string `yaml:"metrics_addr"`
	// DataDir holds the SQLite file and the artifacts (COMPUTE_DATA_DIR,
	// default ./data).
	DataDir string `yaml:"data_dir"`
	// DatabaseURL selects PostgreSQL when it is a postgres:// URL
	// (DATABASE_URL); empty means SQLite at DataDir/compute.db.
	DatabaseURL string `yaml:"database_url"`
	// APIKey is an admin key accepted as Authorization: Bearer
	// (COMPUTE_API_KEY); it is stored hashed at start.
	APIKey string `yaml:"api_key"`
	// PublicURL is the base of URLs handed to clients, such as artifact
	// URLs (COMPUTE_PUBLIC_URL). Without it, a process that serves the API
	// uses http://Addr when Addr names a host, and other processes (and
	// API processes listening on every interface) hand out relative URLs.
	PublicURL string `yaml:"public_url"`
	// MaxBodyBytes limits request bodies (COMPUTE_MAX_BODY_BYTES, default
	// 1048576).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Workers is how many tasks this process runs at once
	// (COMPUTE_WORKERS, default 8).
	Workers int `yaml:"workers"`
	// AutoMigrate applies pending migrations when a role (serve, api,
	// worker) or an apikey command starts (COMPUTE_AUTO_MIGRATE, default
	// true).
	AutoMigrate bool `yaml:"auto_migrate"`
	// AllowPrivateURLs lets tasks fetch inputs from loopback and private
	// addresses (COMPUTE_ALLOW_PRIVATE_URLS, default false).
	AllowPrivateURLs bool `yaml:"allow_private_urls"`
	// AllowPrivateCIDRs lets tasks fetch inputs from these ranges even if
	// private, while the rest stays refused (COMPUTE_ALLOW_PRIVATE_CIDRS,
	// comma-separated, e.g. "10.20.0.0/16").
	AllowPrivateCIDRs []netip.Prefix `yaml:"allow_private_cidrs"`
	// ShutdownGrace is how long running tasks may finish after SIGTERM
	// (COMPUTE_SHUTDOWN_GRACE, default 30s).
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// Lease is how long a claimed task stays owned without a heartbeat
	// (COMPUTE_LEASE, default 30s); a dead worker's tasks are rescued
	// within about one lease.
	Lease time.Duration `yaml:"lease"`
	// MaxResumes is how often a task is recovered after losing its worker
	// (a crash, a kill -9), counted in its resume_attempt_count apart from
	// max_attempts; past it the task fails with category "lost"
	// (COMPUTE_MAX_RESUMES, default 3; 0: never recover).
	MaxResumes int `yaml:"max_resumes"`
	// QueueLimits are global concurrency limits per queue, written to the
	// database at start (COMPUTE_QUEUE_LIMITS, e.g. "gpu=2,default=50";
	// 0 removes a limit).
	QueueLimits map[string]int `yaml:"queue_limits"`
	// WebhookURL receives the events of tasks that name no webhook_url
	// (COMPUTE_WEBHOOK_URL).
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret signs webhook requests per the Standard Webhooks
	// specification (COMPUTE_WEBHOOK_SECRET, "whsec_…"). Without it,
	// requests are sent unsigned and a warning is logged at start.
	WebhookSecret string `yaml:"webhook_secret"`
	// WebhookRetryMin is the delay before the first retry of a failed
	// delivery; later ones double (COMPUTE_WEBHOOK_RETRY_MIN, default 30s).
	WebhookRetryMin time.Duration `yaml:"webhook_retry_min"`
	// WebhookMaxAttempts bounds the attempts of one delivery
	// (COMPUTE_WEBHOOK_MAX_ATTEMPTS, default 15: about 1 day of retries
	// from 30s, capped at 4h between attempts).
	WebhookMaxAttempts int `yaml:"webhook_max_attempts"`
	// WebhookWindow stops retrying a delivery this long after its event
	// (COMPUTE_WEBHOOK_WINDOW, default 24h).
	WebhookWindow time.Duration `yaml:"webhook_window"`
	// WebhookPerDestination bounds the webhook requests in flight to one
	// destination (scheme, host and port), across processes
	// (COMPUTE_WEBHOOK_PER_DESTINATION, default 2).
	WebhookPerDestination int `yaml:"webhook_per_destination"`
	// WebhookAllowPrivate lets webhooks reach loopback and private
	// addresses (COMPUTE_WEBHOOK_ALLOW_PRIVATE, default false).
	WebhookAllowPrivate bool `yaml:"webhook_allow_private"`
	// WebhookAllowCIDRs lets webhooks reach these ranges even if private
	// (COMPUTE_WEBHOOK_ALLOW_CIDRS, comma-separated).
	WebhookAllowCIDRs []netip.Prefix `yaml:"webhook_allow_cidrs"`
	// RedisURL enables the Redis event bus (REDIS_URL, redis://…).
	RedisURL string `yaml:"redis_url"`
	// RedisPrefix prefixes the Redis channels (COMPUTE_REDIS_PREFIX,
	// default "compute"); events go to "<prefix>:events". Deployments
	// sharing one Redis need different prefixes.
	RedisPrefix string `yaml:"redis_prefix"`
	// SSEKeepAlive is how often an idle event stream sends a comment
	// (COMPUTE_SSE_KEEPALIVE, default 15s).
	SSEKeepAlive time.Duration `yaml:"sse_keepalive"`
	// SSEMaxStreamsPerKey bounds the event streams one API key may hold
	// open at once on this process; one more is answered 429
	// (COMPUTE_SSE_MAX_STREAMS_PER_KEY, default 16).
	SSEMaxStreamsPerKey int `yaml:"sse_max_streams_per_key"`
	// SSEMaxReplaysPerKey bounds the streams of one API key that may be
	// replaying the log from the database at once on this process; one
	// more is answered 429 (COMPUTE_SSE_MAX_REPLAYS_PER_KEY, default 4).
	SSEMaxReplaysPerKey int `yaml:"sse_max_replays_per_key"`
	// SSEMaxReplays bounds the streams of every key together that may be
	// replaying the log at once on this process; one more is answered 429
	// (COMPUTE_SSE_MAX_REPLAYS, default the CPUs the process may use,
	// GOMAXPROCS: a replay keeps a CPU busy while it reads).
	SSEMaxReplays int `yaml:"sse_max_replays"`
	// EventRetention deletes events older than this, in small batches,
	// in processes that run workers (COMPUTE_EVENT_RETENTION, e.g. 720h;
	// default 0: keep every event).
	EventRetention time.Duration `yaml:"event_retention"`
	// ArtifactsURL selects the artifact store: empty for the directory
	// DataDir/artifacts, or s3://BUCKET/PREFIX for an S3-compatible
	// bucket (COMPUTE_ARTIFACTS_URL), which every process of a deployment
	// on several machines must share.
	ArtifactsURL string `yaml:"artifacts_url"`
	// ArtifactsPublicURL is the base of a public or CDN view of the
	// artifact store, under which the artifact at key is
	// ArtifactsPublicURL/key (COMPUTE_ARTIFACTS_PUBLIC_URL, e.g.
	// https://cdn.example.com/compute for a CDN in front of
	// s3://bucket/compute). When set, results and webhooks hand out these
	// URLs instead of the API's /api/v1/artifacts/<key>, and they are read
	// back from the store when tasks name them as input. Anyone who has
	// such a URL can download the artifact.
	ArtifactsPublicURL string `yaml:"artifacts_public_url"`
	// ArtifactRetention deletes the artifacts of finished tasks created
	// longer ago than this, in processes that run workers
	// (COMPUTE_ARTIFACT_RETENTION, e.g. 720h for 30 days; default 0: keep
	// them). The tasks stay; their artifact URLs answer 404.
	ArtifactRetention time.Duration `yaml:"artifact_retention"`
	// S3Region is the artifact bucket's region (AWS_REGION; default the
	// SDK's configuration, else us-east-1).
	S3Region string `yaml:"aws_region"`
	// S3Endpoint is the S3 API of a server other than AWS
	// (AWS_ENDPOINT_URL_S3, e.g. http://minio:9000); buckets are then
	// addressed by path.
	S3Endpoint string `yaml:"aws_endpoint_url_s3"`
	// S3AccessKeyID is the access key of the artifact bucket's
	// credentials (AWS_ACCESS_KEY_ID); without it the AWS SDK's default
	// chain (shared files, instance role) is used.
	S3AccessKeyID string `yaml:"aws_access_key_id"`
	// S3SecretAccessKey is its secret (AWS_SECRET_ACCESS_KEY); the two are
	// set together or not at all.
	S3SecretAccessKey string `yaml:"aws_secret_access_key"`
	// HTTPWriteTimeout bounds writing the response of every route but the
	// event streams, so a client that never reads cannot pin it
	// (COMPUTE_HTTP_WRITE_TIMEOUT, default 60s).
	HTTPWriteTimeout time.Duration `yaml:"http_write_timeout"`
	// MaxPageBytes bounds the encoded items of one task-list page; a page
	// that would pass it ends early and its cursor continues it
	// (COMPUTE_MAX_PAGE_BYTES, default 4194304).
	MaxPageBytes int `yaml:"max_page_bytes"`
	// DBListConns is the size of PostgreSQL's connection pool for event
	// replays and task lists, apart from the writers'
	// (COMPUTE_DB_LIST_CONNS, default 4).
	DBListConns int `yaml:"db_list_conns"`
	// LogLevel is debug, info, warn or error (COMPUTE_LOG_LEVEL, default
	// info).
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json (COMPUTE_LOG_FORMAT, default text).
	LogFormat string `yaml:"log_format"`

	// File is the YAML file the settings were read from (--config,
	// COMPUTE_CONFIG); "" when there is none. Every setting above can be
	// written in it under its variable's name in lower case without
	// COMPUTE_ (data_dir, database_url, workers); the variable, when set,
	// overrides the file.
	File string `yaml:"-"`
	// Executors are the file's `executors:`, by name; nil without a file
	// (or without the section), when the executors mock and local exist.
	Executors map[string]ExecutorEntry `yaml:"-"`
	// Types are the file's `types:`: per task type, the executor its
	// tasks run on when they name none, and its fallbacks.
	Types map[string]TypeEntry `yaml:"-"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Addr:          "127.0.0.1:9000",
		DataDir:       "./data",
		MaxBodyBytes:  1 << 20,
		Workers:       8,
		AutoMigrate:   true,
		ShutdownGrace: 30 * time.Second,
		Lease:         30 * time.Second,
		MaxResumes:    3,
		LogLevel:      "info",

		WebhookRetryMin:    30 * time.Second,
		WebhookMaxAttempts: 15,
		WebhookWindow:      24 * time.Hour,
		RedisPrefix:        "compute",
		SSEKeepAlive:       15 * time.Second,
		LogFormat:          "text",

		WebhookPerDestination: 2,
		SSEMaxStreamsPerKey:   16,
		SSEMaxReplaysPerKey:   4,
		SSEMaxReplays:         runtime.GOMAXPROCS(0),
		HTTPWriteTimeout:      60 * time.Second,
		MaxPageBytes:          4 << 20,
		DBListConns:           4,
	}
}

// FromEnv returns the defaults overridden by the environment.
func FromEnv() (Config, error) {
	c := Default()
	err := c.applyEnv()
	return c, err
}

// applyEnv overrides c's settings with the environment's.
func (c *Config) applyEnv() error {
	str := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*dst = v
		}
	}
	str("COMPUTE_ADDR", &c.Addr)
	str("COMPUTE_METRICS_ADDR", &c.MetricsAddr)
	str("COMPUTE_DATA_DIR", &c.DataDir)
	str("DATABASE_URL", &c.DatabaseURL)
	str("COMPUTE_API_KEY", &c.APIKey)
	str("COMPUTE_PUBLIC_URL", &c.PublicURL)
	str("COMPUTE_LOG_LEVEL", &c.LogLevel)
	str("COMPUTE_LOG_FORMAT", &c.LogFormat)
	str("COMPUTE_WEBHOOK_URL", &c.WebhookURL)
	str("COMPUTE_WEBHOOK_SECRET", &c.WebhookSecret)
	str("REDIS_URL", &c.RedisURL)
	str("COMPUTE_REDIS_PREFIX", &c.RedisPrefix)
	str("COMPUTE_ARTIFACTS_URL", &c.ArtifactsURL)
	str("COMPUTE_ARTIFACTS_PUBLIC_URL", &c.ArtifactsPublicURL)
	str("AWS_REGION", &c.S3Region)
	str("AWS_ENDPOINT_URL_S3", &c.S3Endpoint)
	str("AWS_ACCESS_KEY_ID", &c.S3AccessKeyID)
	str("AWS_SECRET_ACCESS_KEY", &c.S3SecretAccessKey)
	var errs []string
	parse := func(name string, fn func(string) error) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			if err := fn(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", name, v, err))
			}
		}
	}
	parse("COMPUTE_MAX_BODY_BYTES", func(v string) (err error) { c.MaxBodyBytes, err = strconv.ParseInt(v, 10, 64); return })
	parse("COMPUTE_WORKERS", func(v string) (err error) { c.Workers, err = strconv.Atoi(v); return })
	parse("COMPUTE_AUTO_MIGRATE", func(v string) (err error) { c.AutoMigrate, err = strconv.ParseBool(v); return })
	parse("COMPUTE_ALLOW_PRIVATE_URLS", func(v string) (err error) { c.AllowPrivateURLs, err = strconv.ParseBool(v); return })
	parse("COMPUTE_SHUTDOWN_GRACE", func(v string) (err error) { c.ShutdownGrace, err = time.ParseDuration(v); return })
	parse("COMPUTE_LEASE", func(v string) (err error) { c.Lease, err = time.ParseDuration(v); return })
	parse("COMPUTE_MAX_RESUMES", func(v string) (err error) { c.MaxResumes, err = strconv.Atoi(v); return })
	parse("COMPUTE_SSE_KEEPALIVE", func(v string) (err error) { c.SSEKeepAlive, err = time.ParseDuration(v); return })
	parse("COMPUTE_SSE_MAX_STREAMS_PER_KEY", func(v string) (err error) { c.SSEMaxStreamsPerKey, err = strconv.Atoi(v); return })
	parse("COMPUTE_SSE_MAX_REPLAYS_PER_KEY", func(v string) (err error) { c.SSEMaxReplaysPerKey, err = strconv.Atoi(v); return })
	parse("COMPUTE_SSE_MAX_REPLAYS", func(v string) (err error) { c.SSEMaxReplays, err = strconv.Atoi(v); return })
	parse("COMPUTE_EVENT_RETENTION", func(v string) (err error) { c.EventRetention, err = time.ParseDuration(v); return })
	parse("COMPUTE_ARTIFACT_RETENTION", func(v string) (err error) { c.ArtifactRetention, err = time.ParseDuration(v); return })
	parse("COMPUTE_HTTP_WRITE_TIMEOUT", func(v string) (err error) { c.HTTPWriteTimeout, err = time.ParseDuration(v); return })
	parse("COMPUTE_MAX_PAGE_BYTES", func(v string) (err error) { c.MaxPageBytes, err = strconv.Atoi(v); return })
	parse("COMPUTE_DB_LIST_CONNS", func(v string) (err error) { c.DBListConns, err = strconv.Atoi(v); return })
	parse("COMPUTE_WEBHOOK_RETRY_MIN", func(v string) (err error) { c.WebhookRetryMin, err = time.ParseDuration(v); return })
	parse("COMPUTE_WEBHOOK_MAX_ATTEMPTS", func(v string) (err error) { c.WebhookMaxAttempts, err = strconv.Atoi(v); return })
	parse("COMPUTE_WEBHOOK_WINDOW", func(v string) (err error) { c.WebhookWindow, err = time.ParseDuration(v); return })
	parse("COMPUTE_WEBHOOK_PER_DESTINATION", func(v string) (err error) { c.WebhookPerDestination, err = strconv.Atoi(v); return })
	parse("COMPUTE_WEBHOOK_ALLOW_PRIVATE", func(v string) (err error) { c.WebhookAllowPrivate, err = strconv.ParseBool(v); return })
	parse("COMPUTE_ALLOW_PRIVATE_CIDRS", func(v string) (err error) { c.AllowPrivateCIDRs, err = ParseCIDRs(v); return })
	parse("COMPUTE_WEBHOOK_ALLOW_CIDRS", func(v string) (err error) { c.WebhookAllowCIDRs, err = ParseCIDRs(v); return })
	parse("COMPUTE_QUEUE_LIMITS", func(v string) (err error) { c.QueueLimits, err = ParseQueueLimits(v); return })
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// SettingError is a setting Validate refuses. Setting names it by its
// environment variable (COMPUTE_WORKERS); cmd/compute renames it to the
// flag (--workers) when a flag gave the value, so the message names the
// setting as the user wrote it.
type SettingError struct {
	// Setting is the variable (or flag) that holds the bad value.
	Setting string
	// Err says what is wrong with it.
	Err error
}

// Error implements error: "config: SETTING problem".
func (e *SettingError) Error() string {
	msg := e.Err.Error()
	if !strings.HasPrefix(msg, ":") {
		msg = " " + msg
	}
	return "config: " + e.Setting + msg
}

// Unwrap returns the problem.
func (e *SettingError) Unwrap() error { return e.Err }

// invalid returns the SettingError of setting, the problem formatted like
// fmt.Errorf (so %w wraps).
func invalid(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// Validate checks every field and names the first bad one by its setting,
// as a *SettingError.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return invalid("COMPUTE_ADDR", "%q: want host:port", c.Addr)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return invalid("COMPUTE_METRICS_ADDR", "%q: want host:port", c.MetricsAddr)
		}
	}
	if c.DataDir == "" {
		return invalid("COMPUTE_DATA_DIR", "must not be empty")
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return invalid("DATABASE_URL", "must be a postgres:// URL (leave it empty for SQLite in the data dir)")
	}
	if c.APIKey != "" && len(c.APIKey) < 16 {
		return invalid("COMPUTE_API_KEY", "must be at least 16 characters")
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("COMPUTE_PUBLIC_URL", "%q: want an absolute http(s) URL", c.PublicURL)
		}
	}
	if err := c.validateArtifacts(); err != nil {
		return err
	}
	if c.MaxBodyBytes < 1024 {
		return invalid("COMPUTE_MAX_BODY_BYTES", "must be at least 1024")
	}
	if c.Workers < 0 || c.Workers > 10000 {
		return invalid("COMPUTE_WORKERS", "must be between 0 and 10000")
	}
	if c.ShutdownGrace < 0 {
		return invalid("COMPUTE_SHUTDOWN_GRACE", "must not be negative")
	}
	if c.Lease < time.Second {
		return invalid("COMPUTE_LEASE", "must be at least 1s")
	}
	if c.MaxResumes < 0 || c.MaxResumes > 1000 {
		return invalid("COMPUTE_MAX_RESUMES", "must be between 0 and 1000")
	}
	for q, n := range c.QueueLimits {
		if q == "" || n < 0 {
			return invalid("COMPUTE_QUEUE_LIMITS", ": %q=%d: want a queue name and a limit >= 0", q, n)
		}
	}
	if c.WebhookURL != "" {
		// The rule a task's webhook_url follows.
		if err := netguard.CheckEndpointURL(c.WebhookURL); err != nil {
			return invalid("COMPUTE_WEBHOOK_URL", ": %w", err)
		}
	}
	if c.WebhookSecret != "" && !strings.HasPrefix(c.WebhookSecret, "whsec_") {
		return invalid("COMPUTE_WEBHOOK_SECRET", "must start with whsec_ (Standard Webhooks)")
	}
	if c.WebhookRetryMin < time.Second {
		return invalid("COMPUTE_WEBHOOK_RETRY_MIN", "must be at least 1s")
	}
	if c.WebhookMaxAttempts < 1 || c.WebhookMaxAttempts > 100 {
		return invalid("COMPUTE_WEBHOOK_MAX_ATTEMPTS", "must be between 1 and 100")
	}
	if c.WebhookPerDestination < 1 || c.WebhookPerDestination > 100 {
		return invalid("COMPUTE_WEBHOOK_PER_DESTINATION", "must be between 1 and 100")
	}
	if c.WebhookWindow < time.Minute {
		return invalid("COMPUTE_WEBHOOK_WINDOW", "must be at least 1m")
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
		return invalid("REDIS_URL", "must be a redis:// or rediss:// URL")
	}
	if c.SSEKeepAlive < 10*time.Millisecond {
		return invalid("COMPUTE_SSE_KEEPALIVE", "must be at least 10ms")
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return invalid("COMPUTE_LOG_LEVEL", "%q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return invalid("COMPUTE_LOG_FORMAT", "%q: want text or json", c.LogFormat)
	}
	return nil
}

// DSN is the store's connection string: DatabaseURL, or the SQLite file.
func (c *Config) DSN() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.DataDir, "compute.db")
}

// ArtifactDir is where the local artifact store keeps files.
func (c *Config) ArtifactDir() string { return filepath.Join(c.DataDir, "artifacts") }

// InstanceDir is where worker processes keep their instance identities.
func (c *Config) InstanceDir() string { return filepath.Join(c.DataDir, "instances") }

// BaseURL is PublicURL, or http://Addr when Addr names a host. It is ""
// when Addr listens on every interface (no host, 0.0.0.0 or ::) or on a
// port chosen at bind time (0): such an address is not one a client can
// use.
func (c *Config) BaseURL() string {
	if c.PublicURL != "" {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return ""
	}
	return "http://" + c.Addr
}

// AnnouncedBaseURL is the base of the URLs a process hands out, such as
// artifact URLs: BaseURL for a process that serves the API (servesAPI), and
// for one that does not (the worker role) PublicURL alone. "" means
// relative URLs (/api/v1/artifacts/…), which every API process of the
// deployment serves: a worker has no address of its own to announce.
func (c *Config) AnnouncedBaseURL(servesAPI bool) string {
	if !servesAPI {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	return c.BaseURL()
}

// ParseCIDRs parses a comma-separated list of CIDR ranges
// ("10.20.0.0/16, fd00::/8"); empty entries are skipped.
func ParseCIDRs(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseQueueLimits parses "queue=n,queue=n".
func ParseQueueLimits(v string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		q, n, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want queue=limit", part)
		}
		limit, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || limit < 0 || strings.TrimSpace(q) == "" {
			return nil, fmt.Errorf("%q: want queue=limit with a limit >= 0", part)
		}
		out[strings.TrimSpace(q)] = limit
	}
	return out, nil
}

// validateArtifacts checks the artifact store's settings.
func (c *Config) validateArtifacts() error {
	if c.ArtifactsURL != "" {
		u, err := url.Parse(c.ArtifactsURL)
		if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return invalid("COMPUTE_ARTIFACTS_URL", "%q: want s3://BUCKET/PREFIX (leave it empty for the data dir)", c.ArtifactsURL)
		}
	}
	if c.ArtifactsPublicURL != "" {
		u, err := url.Parse(c.ArtifactsPublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return invalid("COMPUTE_ARTIFACTS_PUBLIC_URL", "%q: want an absolute http(s) URL without query", c.ArtifactsPublicURL)
		}
	}
	if c.S3Endpoint != "" {
		u, err := url.Parse(c.S3Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("AWS_ENDPOINT_URL_S3", "%q: want an absolute http(s) URL", c.S3Endpoint)
		}
	}
	if (c.S3AccessKeyID == "") != (c.S3SecretAccessKey == "") {
		return invalid("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all")
	}
	if c.ArtifactRetention != 0 && c.ArtifactRetention < time.Hour {
		return invalid("COMPUTE_ARTIFACT_RETENTION", "must be 0 (keep artifacts) or at least 1h")
	}
	return nil
}

// validateLimits checks the bounds that keep one client or tenant from
// starving the others.
func (c *Config) validateLimits() error {
	switch {
	case c.SSEMaxStreamsPerKey < 1:
		return invalid("COMPUTE_SSE_MAX_STREAMS_PER_KEY", "must be at least 1")
	case c.SSEMaxReplaysPerKey < 1:
		return invalid("COMPUTE_SSE_MAX_REPLAYS_PER_KEY", "must be at least 1")
	case c.SSEMaxReplays < 1:
		return invalid("COMPUTE_SSE_MAX_REPLAYS", "must be at least 1")
	case c.EventRetention != 0 && c.EventRetention < time.Minute:
		return invalid("COMPUTE_EVENT_RETENTION", "must be 0 (keep every event) or at least 1m")
	case c.HTTPWriteTimeout < time.Second:
		return invalid("COMPUTE_HTTP_WRITE_TIMEOUT", "must be at least 1s")
	case c.MaxPageBytes < 64<<10:
		return invalid("COMPUTE_MAX_PAGE_BYTES", "must be at least 65536")
	case c.DBListConns < 1:
		return invalid("COMPUTE_DB_LIST_CONNS", "must be at least 1")
	}
	return nil
}
