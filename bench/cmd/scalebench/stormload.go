package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computeserver/compute/bench/internal/cpustat"
)

// createRun is one timed run of admin creates.
type createRun struct {
	Clients int     `json:"clients"`
	Seconds float64 `json:"seconds"`
	// Created counts the 201s of the measured run, Warm those of the
	// unmeasured warm-up before it.
	Created    int     `json:"created"`
	Warm       int     `json:"warmup_created"`
	PerSec     float64 `json:"per_sec"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	MaxMS      float64 `json:"max_ms"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	// CPU is how busy the machine and this process (server, create
	// clients and stream clients) were during the measured run.
	CPU cpustat.Use `json:"cpu"`
}

// streamRun is what the storm's stream clients saw, warm-up included.
type streamRun struct {
	Streams  int     `json:"streams"`
	Seconds  float64 `json:"seconds"`
	Connects int     `json:"connects"`
	// CaughtUp counts the connections that read their tenant's whole log;
	// Incomplete those of them that got another number of events than
	// the log holds (there should be none).
	CaughtUp   int `json:"caught_up"`
	Incomplete int `json:"incomplete"`
	// TooMany counts 429 answers; OtherStatus any other non-200.
	TooMany     int `json:"answered_429"`
	OtherStatus int `json:"other_status"`
	// Errors counts transport errors and streams that ended early.
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Events       int64   `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
	// CatchUp is the time from sending the request to the tenant's last
	// event, of the connections that caught up.
	CatchUpP50MS float64 `json:"catch_up_p50_ms"`
	CatchUpP99MS float64 `json:"catch_up_p99_ms"`
}

// measureStorm measures admin creates alone, then again while one stream
// client per tenant replays its log in a loop.
func measureStorm(ctx context.Context, o *options, base, admin string, tenants []tenantLog) (stormRun, error) {
	var r stormRun
	hc := createClient(o.storm.clients)
	defer hc.CloseIdleConnections()
	url := base + "/api/v1/tasks/"
	timed := func() createRun {
		warm := driveCreates(ctx, hc, url, admin, o.storm.clients, o.storm.warmup)
		run := driveCreates(ctx, hc, url, admin, o.storm.clients, o.storm.duration)
		run.Warm = warm.Created
		return run
	}
	r.Alone = timed()

	sctx, stop := context.WithCancel(ctx)
	sc := &streamCounts{}
	shc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	var wg sync.WaitGroup
	began := time.Now()
	for _, t := range tenants {
		wg.Go(func() { replayLoop(sctx, shc, base+"/api/v1/events", t, o.storm.connTimeout, sc) })
	}
	stopProfile, err := o.storm.startProfile()
	if err != nil {
		stop()
		wg.Wait()
		return r, err
	}
	r.Storm = timed()
	stopProfile()
	stop()
	wg.Wait()
	shc.CloseIdleConnections()
	r.Streams = sc.result(len(tenants), time.Since(began))
	if r.Alone.PerSec > 0 {
		r.Ratio = r.Storm.PerSec / r.Alone.PerSec
	}
	return r, ctx.Err()
}

// startProfile starts the -storm-cpuprofile profile, once per program
// run; stop ends it.
func (s *stormOptions) startProfile() (stop func(), err error) {
	if s.profile == "" {
		return func() {}, nil
	}
	f, err := os.Create(s.profile)
	if err != nil {
		return nil, err
	}
	s.profile = "" // the first storm only
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// createClient keeps one connection per create client open.
func createClient(clients int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: clients,
			MaxConnsPerHost:     clients,
			DisableCompression:  true,
		},
	}
}

const stormCreateBody = `{"task_type":"echo","message":"hello from scalebench storm"}`

// driveCreates POSTs echo creates with the admin key from clients
// goroutines for dur; anything but a 201 is an error.
func driveCreates(ctx context.Context, hc *http.Client, url, key string, clients int, dur time.Duration) createRun {
	var (
		mu       sync.Mutex
		lats     []float64
		created  int
		errCount int
		firstErr string
		wg       sync.WaitGroup
	)
	cpu0 := cpustat.Now()
	start := time.Now()
	deadline := start.Add(dur)
	for range clients {
		wg.Go(func() {
			var local []float64
			ok, errs, first := 0, 0, ""
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				err := createOnce(ctx, hc, url, key)
				local = append(local, float64(time.Since(t0).Microseconds())/1000)
				if err == nil {
					ok++
					continue
				}
				if errs++; first == "" {
					first = err.Error()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			lats = append(lats, local...)
			created += ok
			errCount += errs
			if firstErr == "" {
				firstErr = first
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	slices.Sort(lats)
	run := createRun{Clients: clients, Seconds: elapsed, Created: created, PerSec: float64(created) / elapsed,
		P50MS: pct(lats, 0.50), P99MS: pct(lats, 0.99), Errors: errCount, FirstError: firstErr, CPU: cpustat.Between(cpu0, cpustat.Now())}
	if len(lats) > 0 {
		run.MaxMS = lats[len(lats)-1]
	}
	return run
}

func createOnce(ctx context.Context, hc *http.Client, url, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(stormCreateBody)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create answered %d", resp.StatusCode)
	}
	return nil
}

// streamCounts gathers the stream clients' outcomes.
type streamCounts struct {
	events atomic.Int64

	mu                  sync.Mutex
	connects, caughtUp  int
	incomplete, tooMany int
	otherStatus, errs   int
	firstErr            string
	catchUp             []float64
}

func (c *streamCounts) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errs++; c.firstErr == "" {
		c.firstErr = err.Error()
	}
}

func (c *streamCounts) result(streams int, elapsed time.Duration) streamRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.catchUp)
	ev := c.events.Load()
	return streamRun{Streams: streams, Seconds: elapsed.Seconds(), Connects: c.connects, CaughtUp: c.caughtUp,
		Incomplete: c.incomplete, TooMany: c.tooMany, OtherStatus: c.otherStatus, Errors: c.errs, FirstError: c.firstErr,
		Events: ev, EventsPerSec: float64(ev) / elapsed.Seconds(), CatchUpP50MS: pct(c.catchUp, 0.50), CatchUpP99MS: pct(c.catchUp, 0.99)}
}

// replayBackoff is how long a stream client waits after a refusal or an
// error before it connects again, so that a refused client does not spin.
const replayBackoff = 100 * time.Millisecond

// replayLoop connects with the tenant's key and Last-Event-ID: 0, reads
// until the tenant's last event, disconnects and starts again, until ctx
// ends.
func replayLoop(ctx context.Context, hc *http.Client, url string, t tenantLog, connTimeout time.Duration, c *streamCounts) {
	for ctx.Err() == nil {
		status, n, last, dur, err := replayOnce(ctx, hc, url, t, connTimeout)
		c.events.Add(int64(n))
		if ctx.Err() != nil {
			return // stopped mid-replay: neither caught up nor an error
		}
		c.mu.Lock()
		c.connects++
		switch {
		case err != nil:
			c.mu.Unlock()
			c.fail(err)
		case status == http.StatusTooManyRequests:
			c.tooMany++
			c.mu.Unlock()
		case status != http.StatusOK:
			c.otherStatus++
			c.mu.Unlock()
			c.fail(fmt.Errorf("stream answered %d", status))
		case last >= t.lastID:
			c.caughtUp++
			c.catchUp = append(c.catchUp, float64(dur.Microseconds())/1000)
			if n != t.count {
				c.incomplete++
			}
			c.mu.Unlock()
			continue
		default:
			c.mu.Unlock()
			c.fail(fmt.Errorf("stream ended at event %d before %d", last, t.lastID))
		}
		select {
		case <-ctx.Done():
		case <-time.After(replayBackoff):
		}
	}
}

// replayOnce makes one connection and reads events until id t.lastID; it
// returns the status, the events read, the last id and how long it took.
func replayOnce(ctx context.Context, hc *http.Client, url string, t tenantLog, connTimeout time.Duration) (int, int, int64, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, connTimeout)
	defer cancel()
	t0 := time.Now()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Last-Event-ID", "0")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, 0, 0, 0, nil
	}
	n, last := 0, int64(0)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for last < t.lastID {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a long data line; only id lines matter
			}
			return resp.StatusCode, n, last, time.Since(t0), fmt.Errorf("reading the stream: %w", err)
		}
		if v, ok := bytes.CutPrefix(line, []byte("id: ")); ok {
			id, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return resp.StatusCode, n, last, time.Since(t0), fmt.Errorf("event id %q: %w", v, err)
			}
			n, last = n+1, id
		}
	}
	return resp.StatusCode, n, last, time.Since(t0), nil
}
