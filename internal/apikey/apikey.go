// Package apikey makes and hashes API keys. Keys are 32 random bytes, so a
// single SHA-256 is the right hash at rest: there is nothing to brute-force
// that a slow hash would protect.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/store"
	"github.com/google/uuid"
)

// Prefix starts every generated key, so leaked keys are easy to search for.
const Prefix = "csk_"

// Generate returns a new random key.
func Generate() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("apikey: reading random bytes: " + err.Error()) // never fails on supported platforms
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash returns the hex SHA-256 of a key, the only form stored.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Display returns the first characters of a key, safe to log and show.
func Display(key string) string {
	if !strings.HasPrefix(key, Prefix) {
		// A key chosen by an operator: show as little of it as possible.
		if len(key) < 16 {
			return "…"
		}
		return key[:4] + "…"
	}
	if len(key) <= len(Prefix)+6 {
		return Prefix + "…"
	}
	return key[:len(Prefix)+6] + "…"
}

// Record is the stored form of key: its hash and display prefix, never the
// key itself. An empty tenant makes an admin key.
func Record(key, name, tenant string) store.APIKey {
	return store.APIKey{
		ID: uuid.New(), Hash: Hash(key), Prefix: Display(key), Name: name,
		TenantID: tenant, Admin: tenant == "", CreatedAt: time.Now().UTC(),
	}
}

// MaxTenantLen is the longest tenant name, in characters, accepted wherever
// a tenant is named: a key's tenant, a task's origin_tenant_id, the list
// and event filters.
const MaxTenantLen = 256

// CheckTenant reports why name cannot be a tenant: empty, longer than
// MaxTenantLen characters, not UTF-8, with leading or trailing white space,
// or with a control character. The error states the rule.
func CheckTenant(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("a tenant name must not be empty or blank")
	case utf8.RuneCountInString(name) > MaxTenantLen:
		return fmt.Errorf("a tenant name must be at most %d characters", MaxTenantLen)
	case !utf8.ValidString(name):
		return errors.New("a tenant name must be valid UTF-8")
	case strings.TrimSpace(name) != name:
		return errors.New("a tenant name must not start or end with white space")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("a tenant name must not contain control characters")
	}
	return nil
}
