package apikey_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/apikey"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	const n = 1000
	seen := make(map[string]bool, n)
	for range n {
		k := apikey.Generate()
		rest, ok := strings.CutPrefix(k, apikey.Prefix)
		if !ok {
			t.Fatalf("Generate() = %q, want the prefix %q", k, apikey.Prefix)
		}
		raw, err := base64.RawURLEncoding.DecodeString(rest)
		if err != nil {
			t.Fatalf("Generate() = %q: the part after the prefix is not unpadded base64url: %v", k, err)
		}
		if len(raw) != 32 {
			t.Fatalf("Generate() = %q carries %d random bytes, want 32", k, len(raw))
		}
		if seen[k] {
			t.Fatalf("Generate() returned %q twice in %d calls", k, n)
		}
		seen[k] = true
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want string
	}{
		// The SHA-256 test vectors of FIPS 180-2.
		{name: "empty", key: "", want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{name: "abc", key: "abc", want: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{name: "generated key", key: "csk_example", want: "9decff8830d809a3580d1a9aee4db3da97cc07d55f6ec0c1d532b5fef2686f53"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := apikey.Hash(tt.key)
			if got != tt.want {
				t.Errorf("Hash(%q) = %s, want %s", tt.key, got, tt.want)
			}
			if again := apikey.Hash(tt.key); again != got {
				t.Errorf("Hash(%q) is not stable: %s then %s", tt.key, got, again)
			}
		})
	}
}

func TestHashDistinguishesKeys(t *testing.T) {
	t.Parallel()
	a, b := apikey.Generate(), apikey.Generate()
	ha, hb := apikey.Hash(a), apikey.Hash(b)
	if ha == hb {
		t.Errorf("two different keys hash alike: %s", ha)
	}
	for _, h := range []string{ha, hb} {
		if len(h) != 64 || strings.ToLower(h) != h {
			t.Errorf("Hash = %q, want 64 lower-case hex digits", h)
		}
		if _, err := hex.DecodeString(h); err != nil {
			t.Errorf("Hash = %q is not hex: %v", h, err)
		}
	}
	if strings.Contains(ha, strings.TrimPrefix(a, apikey.Prefix)) {
		t.Errorf("Hash contains the key itself")
	}
}

func TestDisplay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want string
	}{
		{name: "generated shape", key: "csk_abcdefghijklmnop", want: "csk_abcdef…"},
		{name: "one past the limit", key: "csk_abcdefg", want: "csk_abcdef…"},
		{name: "exactly prefix plus six", key: "csk_abcdef", want: "csk_…"},
		{name: "short", key: "csk_ab", want: "csk_…"},
		{name: "empty", key: "", want: "…"},
		{name: "operator-chosen key", key: "0123456789abcdefXYZ", want: "0123…"},
		{name: "short operator key", key: "0123456789", want: "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := apikey.Display(tt.key); got != tt.want {
				t.Errorf("Display(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestDisplayNeverRevealsMore(t *testing.T) {
	t.Parallel()
	limit := len(apikey.Prefix) + 6
	for range 200 {
		k := apikey.Generate()
		d := apikey.Display(k)
		shown, ok := strings.CutSuffix(d, "…")
		if !ok {
			t.Fatalf("Display(%q) = %q, want it to end with an ellipsis", k, d)
		}
		if len(shown) > limit {
			t.Fatalf("Display(%q) = %q shows %d characters, want at most %d", k, d, len(shown), limit)
		}
		if !strings.HasPrefix(k, shown) {
			t.Fatalf("Display(%q) = %q is not a prefix of the key", k, d)
		}
		if !utf8.ValidString(d) {
			t.Fatalf("Display(%q) = %q is not valid UTF-8", k, d)
		}
	}
}

func ExampleHash() {
	fmt.Println(apikey.Hash("abc"))
	// Output: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
}

func ExampleDisplay() {
	fmt.Println(apikey.Display("csk_q1w2e3r4t5y6u7i8o9p0"))
	// Output: csk_q1w2e3…
}

// TestRecord checks the stored form of a key: the hash and a display
// prefix, never the key; admin exactly when there is no tenant.
func TestRecord(t *testing.T) {
	t.Parallel()
	key := apikey.Generate()
	admin, tenant := apikey.Record(key, "ops", ""), apikey.Record(key, "acme's", "acme")
	if admin.Hash != apikey.Hash(key) || admin.Prefix != apikey.Display(key) || strings.Contains(admin.Hash+admin.Prefix, key) {
		t.Errorf("record %+v: want the key's hash and display prefix and never the key", admin)
	}
	if !admin.Admin || admin.TenantID != "" || tenant.Admin || tenant.TenantID != "acme" {
		t.Errorf("admin %+v, tenant %+v: want admin only without a tenant", admin, tenant)
	}
	if admin.ID == tenant.ID || admin.CreatedAt.IsZero() || admin.Name != "ops" {
		t.Errorf("records %+v and %+v: want distinct ids, a creation time and the name", admin, tenant)
	}
}

// TestCheckTenant: the tenant-name rule every entry point shares.
func TestCheckTenant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tenant, want string
	}{
		{name: "plain", tenant: "acme"},
		{name: "inner space", tenant: "acme corp"},
		{name: "256 characters", tenant: strings.Repeat("é", 256)},
		{name: "empty", tenant: "", want: "empty or blank"},
		{name: "blank", tenant: " \t", want: "empty or blank"},
		{name: "leading space", tenant: " acme", want: "white space"},
		{name: "trailing newline", tenant: "acme\n", want: "white space"},
		{name: "control", tenant: "ac\x00me", want: "control characters"},
		{name: "escape", tenant: "ac\x1bme", want: "control characters"},
		{name: "257 characters", tenant: strings.Repeat("a", 257), want: "at most 256"},
		{name: "bad utf-8", tenant: "ac\xffme", want: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := apikey.CheckTenant(tt.tenant)
			if tt.want == "" && err != nil {
				t.Errorf("CheckTenant(%q) = %v, want nil", tt.tenant, err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("CheckTenant(%q) = %v, want an error saying %q", tt.tenant, err, tt.want)
			}
		})
	}
}
