package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestClientSettings: each setting comes from its flag, else the
// environment, else the config file; the URL defaults to the server's
// default address; no key anywhere is a usage error naming where to put
// one.
func TestClientSettings(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	path := filepath.Join(home, "cfg", "compute", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"url":"http://file:9000","api_key":"file-key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fileEnv := map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "cfg")}
	tests := []struct {
		name             string
		env              map[string]string
		args             []string
		wantURL, wantKey string
		wantErr          string
	}{
		{name: "file", env: fileEnv, wantURL: "http://file:9000", wantKey: "file-key"},
		{name: "env over file", env: merge(fileEnv, map[string]string{"COMPUTE_URL": "http://env:1", "COMPUTE_API_KEY": "env-key"}),
			wantURL: "http://env:1", wantKey: "env-key"},
		{name: "flags over env", env: merge(fileEnv, map[string]string{"COMPUTE_URL": "http://env:1", "COMPUTE_API_KEY": "env-key"}),
			args: []string{"--url", "http://flag:2", "--api-key", "flag-key"}, wantURL: "http://flag:2", wantKey: "flag-key"},
		{name: "default URL", env: map[string]string{"HOME": home, "COMPUTE_API_KEY": "k"}, wantURL: defaultServerURL, wantKey: "k"},
		{name: "no key", env: map[string]string{"HOME": home},
			wantErr: "no API key: set COMPUTE_API_KEY, pass --api-key, or write {\"api_key\": \"…\"} to " + filepath.Join(home, ".config", "compute", "config.json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f clientFlags
			cmd := &cobra.Command{Use: "x"}
			f.register(cmd)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			s, err := f.resolve(cmd, func(k string) string { return tt.env[k] }, &stderr)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || exitCode(err) != exitUsage {
					t.Errorf("error %v (exit %d), want %q (exit %d)", err, exitCode(err), tt.wantErr, exitUsage)
				}
				return
			}
			if err != nil || s.url != tt.wantURL || s.key != tt.wantKey {
				t.Errorf("got %q %q %v, want %q %q", s.url, s.key, err, tt.wantURL, tt.wantKey)
			}
			if stderr.Len() > 0 {
				t.Errorf("warned: %s", stderr.String())
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestClientConfigFile: a config file that others may read is used, with
// a warning saying how to fix it; one that is not valid is a usage error
// naming the file.
func TestClientConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "compute", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"XDG_CONFIG_HOME": dir}[k] }
	resolve := func() (clientSettings, string, error) {
		var f clientFlags
		cmd := &cobra.Command{Use: "x"}
		f.register(cmd)
		var stderr bytes.Buffer
		s, err := f.resolve(cmd, env, &stderr)
		return s, stderr.String(), err
	}
	if err := os.WriteFile(path, []byte(`{"api_key":"file-key"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, warning, err := resolve()
	if err != nil || s.key != "file-key" || !strings.Contains(warning, "mode 0644") || !strings.Contains(warning, "chmod 600 "+path) {
		t.Errorf("a 0644 file: %q %v, warning %q", s.key, err, warning)
	}
	if err := os.WriteFile(path, []byte(`{"apikey":"typo"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolve(); err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "apikey") {
		t.Errorf("a typo: %v", err)
	}
}

// TestClientSettingsEndToEnd runs commands that find the server and key
// only in the environment or only in the config file; with neither, the
// command stops before any request with exit status 3 and a message
// saying where to put a key.
func TestClientSettingsEndToEnd(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	t.Setenv("COMPUTE_URL", "")
	t.Setenv("COMPUTE_API_KEY", "")
	r := cliNoFlags(t, "task", "list", "--url", "http://"+freeAddr(t))
	if r.code != exitUsage || !strings.Contains(r.err.Error(), "no API key: set COMPUTE_API_KEY") {
		t.Errorf("no key: exit %d, %v", r.code, r.err)
	}

	base := cliServer(t)
	path := filepath.Join(cfgHome, "compute", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"url":"`+base+`","api_key":"`+cliKey+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cliNoFlags(t, "task", "create", "echo", "-f", "message=from the file's settings"); r.err != nil || !strings.Contains(r.stdout, "from the file's settings") {
		t.Errorf("settings from the file: %v\n%s", r.err, r.stdout)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COMPUTE_URL", base)
	t.Setenv("COMPUTE_API_KEY", cliKey)
	if r := cliNoFlags(t, "task", "list"); r.err != nil || !strings.Contains(r.stdout, "echo") {
		t.Errorf("settings from the environment: %v\n%s", r.err, r.stdout)
	}
	t.Setenv("COMPUTE_API_KEY", "a-wrong-key-0123456789")
	if r := cliNoFlags(t, "task", "list"); r.code != exitRefused || !strings.Contains(r.err.Error(), "401") {
		t.Errorf("a wrong key: exit %d, %v", r.code, r.err)
	}
}
