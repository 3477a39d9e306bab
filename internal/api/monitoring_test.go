package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
)

// silentServer accepts connections on loopback, reads each one's request
// line and never answers; it counts the health probes (GET /system_stats).
type silentServer struct {
	ln     net.Listener
	mu     sync.Mutex
	probes int
	conns  []net.Conn
}

func startSilent(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Go(func() {
				line, _ := bufio.NewReader(c).ReadString('\n')
				if strings.HasPrefix(line, "GET /system_stats ") {
					s.mu.Lock()
					s.probes++
					s.mu.Unlock()
				}
			})
		}
	})
	return s
}

func (s *silentServer) URL() string { return "http://" + s.ln.Addr().String() }

func (s *silentServer) probeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probes
}

// GET /monitoring/executors with a ComfyUI server that accepts
// connections and never answers: the probe's timeout records the server
// down with its error and the time, concurrent requests share one probe,
// and a later request within the heartbeat interval probes no more.
func TestMonitoringExecutorsSilentServer(t *testing.T) {
	t.Parallel()
	silent := startSilent(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	settings := fmt.Sprintf(`{"servers": [{"url": %q, "slots": 1}], "workflows": "workflows", "request_timeout": "300ms"}`, silent.URL())
	e := start(t, "sqlite", func(c *config.Config) {
		c.Executors = map[string]config.ExecutorEntry{"gpu": {Type: "comfyui", Settings: json.RawMessage(settings), Dir: dir}}
	})

	type server struct {
		URL       string     `json:"url"`
		Up        bool       `json:"up"`
		LastError string     `json:"last_error"`
		CheckedAt *time.Time `json:"checked_at"`
	}
	get := func() (server, error) {
		req, err := http.NewRequest("GET", e.base+"/api/v1/monitoring/executors", nil)
		if err != nil {
			return server{}, err
		}
		req.Header.Set("Authorization", "Bearer "+adminKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return server{}, err
		}
		defer res.Body.Close()
		var got struct {
			Executors []struct {
				Name    string   `json:"name"`
				Servers []server `json:"servers"`
			} `json:"executors"`
		}
		if res.StatusCode != 200 {
			return server{}, fmt.Errorf("status %d", res.StatusCode)
		}
		if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
			return server{}, err
		}
		for _, ex := range got.Executors {
			if ex.Name == "gpu" && len(ex.Servers) == 1 {
				return ex.Servers[0], nil
			}
		}
		return server{}, fmt.Errorf("no executor gpu with one server in %+v", got)
	}
	check := func(what string, s server, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if s.URL != silent.URL() || s.Up || s.CheckedAt == nil || !strings.Contains(s.LastError, "no answer in time") {
			t.Errorf("%s: server %+v; want %s down, checked, with the timeout as its last error", what, s, silent.URL())
		}
	}

	const n = 4
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := get()
			check(fmt.Sprintf("concurrent request %d", i), s, err)
		})
	}
	wg.Wait()
	s, err := get()
	check("a later request", s, err)
	if got := silent.probeCount(); got != 1 {
		t.Errorf("%d probes reached the server for %d requests within a heartbeat interval, want 1", got, n+1)
	}
}
