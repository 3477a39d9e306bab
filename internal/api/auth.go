package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/store"
)

// principal is the authenticated caller.
type principal struct {
	admin    bool
	tenantID string
	keyID    string
}

func (p principal) scope() store.Scope { return store.Scope{Admin: p.admin, TenantID: p.tenantID} }

// idempotencyScope keeps one caller's Idempotency-Keys apart from another's.
func (p principal) idempotencyScope() string {
	if p.admin {
		return "admin"
	}
	return "tenant:" + p.tenantID
}

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// keyCache remembers verified keys for a short time so a request does not
// cost a database read.
type keyCache struct {
	st  store.API
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]cachedKey
}

type cachedKey struct {
	p       principal
	expires time.Time
}

func newKeyCache(st store.API, ttl time.Duration) *keyCache {
	return &keyCache{st: st, ttl: ttl, entries: map[string]cachedKey{}}
}

var errBadKey = errors.New("invalid API key")

func (c *keyCache) lookup(ctx context.Context, key string) (principal, error) {
	hash := apikey.Hash(key)
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[hash]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, nil
	}
	k, err := c.st.LookupAPIKey(ctx, hash)
	if errors.Is(err, store.ErrKeyNotFound) {
		return principal{}, errBadKey
	}
	if err != nil {
		return principal{}, err
	}
	p := principal{admin: k.Admin, tenantID: k.TenantID, keyID: k.ID.String()}
	c.mu.Lock()
	if len(c.entries) > 10000 {
		c.entries = map[string]cachedKey{}
	}
	c.entries[hash] = cachedKey{p: p, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return p, nil
}

// bearerKey extracts the key of an "Authorization: Bearer <key>" header.
func bearerKey(h string) (string, bool) {
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != "" && len(key) <= 256
}

// resolve authenticates a request's Authorization header.
func (s *Server) resolve(ctx context.Context, header string) (principal, int, string) {
	key, ok := bearerKey(header)
	if !ok {
		return principal{}, http.StatusUnauthorized, "missing API key: send Authorization: Bearer <key>"
	}
	p, err := s.keys.lookup(ctx, key)
	if errors.Is(err, errBadKey) {
		return principal{}, http.StatusUnauthorized, "invalid API key"
	}
	if err != nil {
		s.log.Error("verifying api key", "error", err)
		return principal{}, http.StatusServiceUnavailable, "cannot verify the API key right now; retry later"
	}
	return p, 0, ""
}

// authenticate is the huma middleware that guards operations declaring
// bearer security.
func (s *Server) authenticate(ctx huma.Context, next func(huma.Context)) {
	if len(ctx.Operation().Security) == 0 {
		next(ctx)
		return
	}
	p, status, msg := s.resolve(ctx.Context(), ctx.Header("Authorization"))
	if status != 0 {
		if status == http.StatusUnauthorized {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="compute"`)
		}
		if ra := retryAfter(status); ra != "" {
			ctx.SetHeader("Retry-After", ra)
		}
		_ = huma.WriteErr(s.api, ctx, status, msg)
		return
	}
	next(huma.WithValue(ctx, principalKey{}, p))
}
