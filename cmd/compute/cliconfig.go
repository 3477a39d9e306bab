package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/client"
)

// The exit statuses of the client commands (`compute task …`, `compute
// workflow …`), documented in docs/cli.md. `task watch` and `workflow
// watch` exit with the task's (workflow's) outcome: 0 completed, 1 failed,
// 2 cancelled.
const (
	exitFailed    = 1 // watch: the task failed; any other command: an error not listed below
	exitCancelled = 2 // watch: the task was cancelled
	exitUsage     = 3 // bad arguments or flags, no API key, an unreadable body file or config file
	exitRefused   = 4 // the server refused the request (a 4xx problem: 401, 404, 409, 422…)
	exitServer    = 5 // the server cannot be reached or failed (connection refused, timeout, 5xx)
	exitInterrupt = 130
)

// exitError is an error with the exit status the process ends with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usagef is a usage error (exitUsage).
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCode is the exit status of a command's error.
func exitCode(err error) int {
	var ee *exitError
	var p *client.Problem
	var ue *url.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &p):
		if p.Status >= 500 {
			return exitServer
		}
		return exitRefused
	case errors.Is(err, context.Canceled):
		return exitInterrupt
	case errors.As(err, &ue), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return exitServer // the request did not get an answer
	}
	return exitFailed
}

// describe makes a client command's error readable, with its exit status:
// a problem with its fields, a connection error with the server it was
// for.
func describe(err error, server string) error {
	var ee *exitError
	var p *client.Problem
	var ue *url.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.As(err, &p):
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		var b strings.Builder
		fmt.Fprintf(&b, "the server answered %d %s: %s", p.Status, p.Title, msg)
		for _, e := range p.Errors {
			fmt.Fprintf(&b, "\n  %s: %s", e.Location, e.Message)
			if e.Value != nil {
				v, _ := json.Marshal(e.Value)
				fmt.Fprintf(&b, " (got %s)", v)
			}
		}
		return &exitError{code: exitCode(err), err: errors.New(b.String())}
	case errors.Is(err, context.Canceled):
		return &exitError{code: exitInterrupt, err: errors.New("interrupted")}
	case errors.As(err, &ue):
		return &exitError{code: exitServer, err: fmt.Errorf("cannot reach the server at %s: %w", server, ue.Err)}
	}
	return &exitError{code: exitCode(err), err: err}
}

// defaultServerURL is where `compute serve` listens by default.
const defaultServerURL = "http://127.0.0.1:9000"

// clientFlags are the flags of the client commands.
type clientFlags struct {
	url, apiKey, output string
}

// register adds them to a command group (for its subcommands).
func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.url, "url", "", "server URL (env COMPUTE_URL, config file url; default "+defaultServerURL+")")
	cmd.PersistentFlags().StringVar(&f.apiKey, "api-key", "", "API key (env COMPUTE_API_KEY, config file api_key); prefer those, a flag shows in the process list")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: exitUsage, err: err} })
}

// cliFile is the client config file.
type cliFile struct {
	URL    string `json:"url"`
	APIKey string `json:"api_key"`
}

// cliConfigPath is the client config file's path: compute/config.json
// under $XDG_CONFIG_HOME, else under ~/.config.
func cliConfigPath(getenv func(string) string) string {
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "compute", "config.json")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "compute", "config.json")
	}
	return ""
}

// readCLIFile reads the client config file; a missing one is empty. A
// file with a key that others may read is used, with a warning.
func readCLIFile(path string, stderr io.Writer) (cliFile, error) {
	var f cliFile
	if path == "" {
		return f, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, usagef("reading the config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, usagef("config file %s: %w (want {\"url\": \"…\", \"api_key\": \"…\"})", path, err)
	}
	if st, err := os.Stat(path); err == nil && f.APIKey != "" && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "compute: warning: %s holds an API key and other users may read it (mode %04o); run: chmod 600 %s\n",
			path, st.Mode().Perm(), path)
	}
	return f, nil
}

// clientSettings are where the client connects, with where each came from.
type clientSettings struct {
	url, key   string
	keySource  string // "--api-key", "COMPUTE_API_KEY" or the config file
	configPath string
	outputJSON bool
}

// resolve takes each setting from the flag, else the environment, else the
// config file (flags > env > file).
func (f *clientFlags) resolve(cmd *cobra.Command, getenv func(string) string, stderr io.Writer) (clientSettings, error) {
	s := clientSettings{configPath: cliConfigPath(getenv)}
	switch f.output {
	case "table":
	case "json":
		s.outputJSON = true
	default:
		return s, usagef("--output %q: want table or json", f.output)
	}
	changed := func(name string) bool {
		fl := cmd.Flags().Lookup(name)
		return fl != nil && fl.Changed
	}
	file, err := readCLIFile(s.configPath, stderr)
	if err != nil {
		return s, err
	}
	switch {
	case changed("url"):
		s.url = f.url
	case getenv("COMPUTE_URL") != "":
		s.url = getenv("COMPUTE_URL")
	case file.URL != "":
		s.url = file.URL
	default:
		s.url = defaultServerURL
	}
	switch {
	case changed("api-key"):
		s.key, s.keySource = f.apiKey, "--api-key"
	case getenv("COMPUTE_API_KEY") != "":
		s.key, s.keySource = getenv("COMPUTE_API_KEY"), "COMPUTE_API_KEY"
	case file.APIKey != "":
		s.key, s.keySource = file.APIKey, s.configPath
	}
	if strings.TrimSpace(s.key) == "" {
		where := "set COMPUTE_API_KEY, pass --api-key"
		if s.configPath != "" {
			where += ", or write {\"api_key\": \"…\"} to " + s.configPath
		}
		return s, usagef("no API key: %s", where)
	}
	return s, nil
}

// connect resolves the settings and builds the client.
func (f *clientFlags) connect(cmd *cobra.Command, stderr io.Writer) (*client.Client, clientSettings, error) {
	s, err := f.resolve(cmd, os.Getenv, stderr)
	if err != nil {
		return nil, s, err
	}
	c, err := client.New(s.url, client.WithAPIKey(s.key), client.WithUserAgent("compute-cli/"+version))
	if err != nil {
		return nil, s, usagef("%w", err)
	}
	return c, s, nil
}

// runner turns a client command's function into a cobra RunE: it resolves
// the settings, builds the client and makes the errors readable, with
// their exit status.
type runner = func(func(*cobra.Command, []string, *client.Client, clientSettings) error) func(*cobra.Command, []string) error

// runner returns the runner of the commands that take these flags.
func (f *clientFlags) runner(stderr io.Writer) runner {
	return func(fn func(*cobra.Command, []string, *client.Client, clientSettings) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, s, err := f.connect(cmd, stderr)
			if err != nil {
				return err
			}
			return describe(fn(cmd, args, c, s), s.url)
		}
	}
}
