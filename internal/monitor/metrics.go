// Package monitor is the compute server's operations view: the Prometheus
// metrics served at /metrics and the heartbeat with which every process
// registers itself for GET /api/v1/monitoring/workers.
package monitor

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Sources are where Metrics reads the numbers it does not count itself.
// Each may be nil.
type Sources struct {
	// Store answers the queue depths at every scrape, for the whole
	// deployment (every process reads the same database).
	Store store.Monitor
	// DBs are the store's connection pools by name, for their statistics.
	DBs map[string]*sql.DB
	// OpenStreams counts the event streams this process holds open.
	OpenStreams func() int
	// Logger receives scrape errors.
	Logger *slog.Logger
}

// Metrics are the process's Prometheus metrics, in a registry of their
// own (nothing global). The run metrics are this process's runs; the
// queue depths are the deployment's.
type Metrics struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	tasks    *prometheus.CounterVec
	pickup   *prometheus.HistogramVec
	run      *prometheus.HistogramVec
	webhooks *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	provider *prometheus.CounterVec
}

var _ queue.Observer = (*Metrics)(nil)

// Buckets of the latency histograms, in seconds: from 10 ms to an hour
// (GPU jobs and training runs are long).
var durationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// NewMetrics builds the metrics.
func NewMetrics(src Sources) *Metrics {
	log := src.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log.With("component", "metrics"),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "compute_task_runs_total",
			Help: "Task runs (attempts) this process ended, by task type, executor and outcome (completed, failed, retried, deferred, released, cancelled, lost).",
		}, []string{"task_type", "executor", "outcome"}),
		pickup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "compute_task_pickup_latency_seconds",
			Help:    "Time from when a task became due (run_at, or its creation) to the start of its run on this process, by task type and executor.",
			Buckets: durationBuckets,
		}, []string{"task_type", "executor"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "compute_task_run_duration_seconds",
			Help:    "Duration of the task runs this process ended, by task type and executor.",
			Buckets: durationBuckets,
		}, []string{"task_type", "executor"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "compute_webhook_deliveries_total",
			Help: "Webhook delivery attempts this process recorded, by the delivery's result (delivered, pending: a retry is scheduled, failed, stopped).",
		}, []string{"result"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "compute_provider_tokens_total",
			Help: "Tokens the services reported for the task runs this process ended, by task type, executor and type (input: the prompt's, output: the answer's).",
		}, []string{"task_type", "executor", "type"}),
		provider: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "compute_provider_seconds_total",
			Help: "Seconds of work the services reported for the task runs this process ended (Replicate and Cog predict_time, fal inference_time, ComfyUI execution start to success), by task type and executor.",
		}, []string{"task_type", "executor"}),
	}
	m.reg.MustRegister(m.tasks, m.pickup, m.run, m.webhooks, m.tokens, m.provider,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.Store != nil {
		m.reg.MustRegister(&queueCollector{st: src.Store, log: m.log})
	}
	for name, db := range src.DBs {
		m.reg.MustRegister(collectors.NewDBStatsCollector(db, name))
	}
	if src.OpenStreams != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "compute_event_streams_open",
			Help: "Event streams (SSE) this process holds open.",
		}, func() float64 { return float64(src.OpenStreams()) }))
	}
	return m
}

// Registry returns the registry, to add collectors or gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format. A collector
// that fails (the database is down) leaves its metrics out, and the
// scrape still answers with the others.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	})
}

// RunStarted implements queue.Observer.
func (m *Metrics) RunStarted(t *task.Task, pickup time.Duration) {
	m.pickup.WithLabelValues(t.Type, t.ProviderType).Observe(pickup.Seconds())
}

// RunEnded implements queue.Observer.
func (m *Metrics) RunEnded(t *task.Task, outcome string, took time.Duration, usage task.Usage) {
	m.tasks.WithLabelValues(t.Type, t.ProviderType, outcome).Inc()
	m.run.WithLabelValues(t.Type, t.ProviderType).Observe(took.Seconds())
	if usage.InputTokens != 0 {
		m.tokens.WithLabelValues(t.Type, t.ProviderType, "input").Add(float64(usage.InputTokens))
	}
	if usage.OutputTokens != 0 {
		m.tokens.WithLabelValues(t.Type, t.ProviderType, "output").Add(float64(usage.OutputTokens))
	}
	if usage.ProviderSeconds > 0 {
		m.provider.WithLabelValues(t.Type, t.ProviderType).Add(usage.ProviderSeconds)
	}
}

// WebhookResult counts a recorded webhook attempt (webhook.Config.Observe).
func (m *Metrics) WebhookResult(result string) { m.webhooks.WithLabelValues(result).Inc() }

// queueCollector reads the queue depths from the store at each scrape.
type queueCollector struct {
	st  store.Monitor
	log *slog.Logger
}

var (
	queueTasksDesc = prometheus.NewDesc("compute_queue_tasks",
		"Tasks pending or executing, by queue and status, in the whole deployment.", []string{"queue", "status"}, nil)
	queueOldestDesc = prometheus.NewDesc("compute_queue_oldest_pending_age_seconds",
		"Age of the oldest pending task of a queue (0 when none is pending).", []string{"queue"}, nil)
	queueFinishedDesc = prometheus.NewDesc("compute_queue_finished_last_5m",
		"Tasks of a queue that completed or failed in the last 5 minutes, in the whole deployment.", []string{"queue", "status"}, nil)
)

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueTasksDesc
	ch <- queueOldestDesc
	ch <- queueFinishedDesc
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := task.Now()
	stats, err := c.st.QueueStats(ctx, now)
	if err != nil {
		c.log.Warn("reading queue depths for /metrics", "error", err)
		ch <- prometheus.NewInvalidMetric(queueTasksDesc, err)
		return
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(s.Pending), s.Queue, "pending")
		ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(s.Executing), s.Queue, "executing")
		age := 0.0
		if !s.OldestPending.IsZero() {
			age = max(now.Sub(s.OldestPending).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, age, s.Queue)
		ch <- prometheus.MustNewConstMetric(queueFinishedDesc, prometheus.GaugeValue, float64(s.Completed[1]), s.Queue, "completed")
		ch <- prometheus.MustNewConstMetric(queueFinishedDesc, prometheus.GaugeValue, float64(s.Failed[1]), s.Queue, "failed")
	}
}
