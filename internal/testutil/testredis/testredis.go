// Package testredis gives tests a real Redis server and a channel prefix of
// their own. The server is named by COMPUTE_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0). An unreachable server skips the test, except
// under CI=true, where it fails.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultURL is used when COMPUTE_TEST_REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL returns the URL of a reachable Redis server, or skips (fails in CI).
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("COMPUTE_TEST_REDIS_URL")
	if u == "" {
		u = DefaultURL
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("testredis: parsing %s: %v", u, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testredis: Redis is required in CI but unreachable at %s: %v", u, err)
		}
		t.Skipf("testredis: Redis unreachable at %s (%v); set COMPUTE_TEST_REDIS_URL or start it to run this test", u, err)
	}
	return u
}

// Prefix returns a channel prefix no other test uses.
func Prefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "computetest-" + hex.EncodeToString(b)
}

// ClosedURL returns a redis:// URL of a loopback port nothing listens on: a
// Redis that is down.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "redis://" + addr + "/0"
}
