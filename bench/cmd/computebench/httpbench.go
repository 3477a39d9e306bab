package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/computeserver/compute/bench/internal/cpustat"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// httpResult is one load level against one server.
type httpResult struct {
	Server     string  `json:"server"`
	DB         string  `json:"db,omitempty"`
	Clients    int     `json:"clients"`
	Seconds    float64 `json:"seconds"`
	Requests   int     `json:"requests"`
	PerSec     float64 `json:"per_sec"`
	P50MS      float64 `json:"p50_ms"`
	P90MS      float64 `json:"p90_ms"`
	P99MS      float64 `json:"p99_ms"`
	MaxMS      float64 `json:"max_ms"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Check      string  `json:"check,omitempty"`
	// CPU is how busy the machine and this process (server and load
	// generator) were.
	CPU cpustat.Use `json:"cpu"`
}

// Servers the HTTP load is driven against.
const (
	serverCompute      = "compute API"
	serverBaselineHuma = "baseline huma"
	serverBaselineHTTP = "baseline net/http"
)

const createBody = `{"task_type":"echo","message":"hello from computebench"}`

// loadClient returns an HTTP client that keeps one connection per load
// goroutine open.
func loadClient(clients int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        clients * 2,
			MaxIdleConnsPerHost: clients * 2,
			MaxConnsPerHost:     clients,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// drive sends POSTs of body to url from clients goroutines for dur and
// measures every request; a response other than wantStatus is an error.
func drive(ctx context.Context, hc *http.Client, url, key string, clients int, dur time.Duration, wantStatus int) httpResult {
	res := httpResult{Clients: clients}
	var (
		mu       sync.Mutex
		lats     []float64
		errCount int
		firstErr string
		wg       sync.WaitGroup
	)
	body := []byte(createBody)
	cpu0 := cpustat.Now()
	start := time.Now()
	deadline := start.Add(dur)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]float64, 0, 4096)
			errs, first := 0, ""
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					errs++
					first = err.Error()
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+key)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != wantStatus {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				local = append(local, ms(time.Since(t0)))
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			errCount += errs
			if firstErr == "" {
				firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.CPU = cpustat.Between(cpu0, cpustat.Now())
	sorted := sortedCopy(lats)
	res.Seconds = elapsed.Seconds()
	res.Requests = len(sorted)
	res.PerSec = float64(len(sorted)-errCount) / elapsed.Seconds()
	res.P50MS, res.P90MS, res.P99MS = percentile(sorted, 50), percentile(sorted, 90), percentile(sorted, 99)
	if len(sorted) > 0 {
		res.MaxMS = sorted[len(sorted)-1]
	}
	res.Errors, res.FirstError = errCount, firstErr
	return res
}

// driveLevels warms up and then measures each client count in turn.
func driveLevels(ctx context.Context, o *options, url, key, server, db string, wantStatus int) ([]httpResult, int, error) {
	var out []httpResult
	ok := 0
	for _, c := range o.httpClients {
		hc := loadClient(c)
		warm := drive(ctx, hc, url, key, c, o.httpWarmup, wantStatus)
		ok += warm.Requests - warm.Errors
		stopProfile := o.profile(fmt.Sprintf("http-%s-%s-c%d", slug(server), db, c))
		r := drive(ctx, hc, url, key, c, o.httpDuration, wantStatus)
		stopProfile()
		hc.CloseIdleConnections()
		r.Server, r.DB = server, db
		ok += r.Requests - r.Errors
		out = append(out, r)
		if ctx.Err() != nil {
			return out, ok, ctx.Err()
		}
	}
	return out, ok, nil
}

func slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// runComputeHTTP starts the real server wiring (app.New without workers, so
// only the API runs) on a loopback listener and drives the create route.
func runComputeHTTP(ctx context.Context, env *dbEnv, kind string, o *options) ([]httpResult, error) {
	db, err := env.fresh(ctx, kind, "computehttp")
	if err != nil {
		return nil, err
	}
	defer db.cleanup()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.APIKey = "computebench-" + randomHex(16)
	cfg.Workers = 0
	cfg.LogLevel = "error"
	if kind == dbPostgres {
		cfg.DataDir = filepath.Join(env.dir, "computehttp-pg-"+randomHex(4))
		defer os.RemoveAll(cfg.DataDir)
		cfg.DatabaseURL = db.dsn
	} else {
		cfg.DataDir = filepath.Dir(db.path)
	}
	a, err := app.New(ctx, cfg, app.Options{Version: "computebench"}, discard)
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer a.Close()
	sctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(sctx, ln) }()
	url := "http://" + ln.Addr().String() + "/api/v1/tasks/"
	results, ok, runErr := driveLevels(ctx, o, url, cfg.APIKey, serverCompute, kind, http.StatusCreated)
	stop()
	if err := <-errc; err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return results, runErr
	}
	// The app keeps its SQLite file in DataDir; PostgreSQL is db's schema.
	check, err := (&freshDB{kind: kind, dsn: cfg.DSN(), path: cfg.DSN()}).openSQL()
	if err != nil {
		return results, err
	}
	defer check.Close()
	n, err := countWhere(ctx, check, `SELECT COUNT(*) FROM tasks`)
	if err != nil {
		return results, err
	}
	for i := range results {
		results[i].Check = fmt.Sprintf("tasks in the database=%d, 201 responses=%d", n, ok)
	}
	if n != ok {
		return results, fmt.Errorf("compute API on %s: %d tasks stored but %d creates answered 201", kind, n, ok)
	}
	return results, nil
}

// baselineResponse renders what the compute API would answer for the echo
// create body, so the baselines serialise a body of the same size.
func baselineResponse(def *registry.Definition, message string) ([]byte, error) {
	rec := newEchoRecord(def, message)
	base, err := json.Marshal(rec.Task)
	if err != nil {
		return nil, err
	}
	fields, err := json.Marshal(rec.Fields)
	if err != nil {
		return nil, err
	}
	out := append(base[:len(base)-1:len(base)-1], ',')
	return append(out, fields[1:]...), nil
}

type baselineInput struct {
	Body struct {
		TaskType string `json:"task_type" enum:"echo"`
		Message  string `json:"message" minLength:"1" maxLength:"65536"`
	}
}

type baselineOutput struct {
	Body json.RawMessage
}

// runBaselineHTTP serves a trivial create handler (huma, or plain
// net/http) that parses the body and answers 201 with a task-sized JSON
// body without touching a database, and drives it like the real one.
func runBaselineHTTP(ctx context.Context, o *options, useHuma bool) ([]httpResult, error) {
	reg := registry.New()
	if err := reg.Register(echo.Type()); err != nil {
		return nil, err
	}
	def, _ := reg.Lookup(echo.Name)
	mux := http.NewServeMux()
	server := serverBaselineHTTP
	if useHuma {
		server = serverBaselineHuma
		api := humago.New(mux, huma.DefaultConfig("computebench baseline", "1.0.0"))
		huma.Register(api, huma.Operation{
			OperationID: "create-task", Method: http.MethodPost, Path: "/api/v1/tasks/", DefaultStatus: http.StatusCreated,
		}, func(_ context.Context, in *baselineInput) (*baselineOutput, error) {
			body, err := baselineResponse(def, in.Body.Message)
			if err != nil {
				return nil, err
			}
			return &baselineOutput{Body: body}, nil
		})
	} else {
		mux.HandleFunc("POST /api/v1/tasks/", func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				TaskType string `json:"task_type"`
				Message  string `json:"message"`
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil || in.TaskType != echo.Name || in.Message == "" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			body, err := baselineResponse(def, in.Message)
			if err != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body)
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/api/v1/tasks/"
	results, _, runErr := driveLevels(ctx, o, url, "unused", server, "", http.StatusCreated)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = err
	}
	return results, runErr
}
