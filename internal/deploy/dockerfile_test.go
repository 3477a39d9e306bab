package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// root is the repository root, where the Dockerfile and compose.yaml are.
const root = "../.."

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd   string   // upper case: FROM, RUN, …
	flags []string // leading --name=value options
	args  string   // the rest, as written
	line  int
}

// stage is one FROM and what follows it.
type stage struct {
	base, name string
	ins        []instruction
}

// dockerfile is a parsed Dockerfile: global ARGs and stages.
type dockerfile struct {
	args   map[string]string // ARG defaults before the first FROM
	stages []stage
}

var knownInstructions = map[string]bool{
	"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true, "ADD": true, "COPY": true,
	"ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true, "ONBUILD": true,
	"STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true,
}

// parseDockerfile reads the Dockerfile format's lexical rules: comments,
// line continuations, an instruction word, leading flags.
func parseDockerfile(path string) (*dockerfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	df := &dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var buf strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && buf.Len() == 0) {
			continue
		}
		if buf.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			buf.WriteString(cont + " ")
			continue
		}
		buf.WriteString(line)
		if err := df.add(buf.String(), start); err != nil {
			return nil, err
		}
		buf.Reset()
	}
	if buf.Len() > 0 {
		return nil, fmt.Errorf("line %d: a continuation at the end of the file", start)
	}
	return df, sc.Err()
}

func (df *dockerfile) add(text string, line int) error {
	word, rest, _ := strings.Cut(text, " ")
	in := instruction{cmd: strings.ToUpper(word), line: line}
	if !knownInstructions[in.cmd] {
		return fmt.Errorf("line %d: unknown instruction %q", line, word)
	}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, more, _ := strings.Cut(rest, " ")
		in.flags = append(in.flags, flag)
		rest = strings.TrimSpace(more)
	}
	in.args = rest
	if in.args == "" {
		return fmt.Errorf("line %d: %s without arguments", line, in.cmd)
	}
	switch {
	case in.cmd == "FROM":
		f := strings.Fields(rest)
		st := stage{base: f[0]}
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			st.name = f[2]
		} else if len(f) != 1 {
			return fmt.Errorf("line %d: FROM %q: want IMAGE [AS NAME]", line, rest)
		}
		df.stages = append(df.stages, st)
	case len(df.stages) == 0:
		if in.cmd != "ARG" {
			return fmt.Errorf("line %d: %s before the first FROM", line, in.cmd)
		}
		k, v, _ := strings.Cut(rest, "=")
		df.args[k] = v
	default:
		st := &df.stages[len(df.stages)-1]
		st.ins = append(st.ins, in)
	}
	return nil
}

// all returns the stage's instructions of one kind.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// flag returns the value of --name=value, or "".
func (in instruction) flag(name string) string {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// execForm decodes a JSON-array (exec form) argument list.
func (in instruction) execForm(t *testing.T) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("line %d: %s %s: want the exec form, a JSON array (%v)", in.line, in.cmd, in.args, err)
	}
	return argv
}

// envOf reads ENV instructions (key=value pairs) into a map.
func envOf(t *testing.T, s stage) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		for _, kv := range shellWords(t, in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("line %d: ENV %q: want key=value pairs", in.line, in.args)
			}
			env[k] = v
		}
	}
	return env
}

// shellWords splits a shell command line into words: blanks separate,
// double and single quotes group (no expansion inside single quotes).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// expand replaces ${NAME} and $NAME with vars' values.
func expand(s string, vars map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
}

func loadDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	df, err := parseDockerfile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatalf("parsing the Dockerfile: %v", err)
	}
	if len(df.stages) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a build stage and a runtime stage", len(df.stages))
	}
	return df
}

// goBuild is the build stage's `go build` command: its environment
// assignments, its argv (go build …) and the -o target.
type goBuild struct {
	env    []string
	argv   []string
	output int // index of -o's value in argv
}

func buildCommand(t *testing.T, df *dockerfile) goBuild {
	t.Helper()
	build := df.stages[0]
	vars := map[string]string{}
	for k, v := range df.args {
		vars[k] = v
	}
	for _, in := range build.all("ARG") {
		k, v, _ := strings.Cut(in.args, "=")
		vars[k] = v
	}
	for _, in := range build.all("RUN") {
		words := shellWords(t, expand(in.args, vars))
		var gb goBuild
		i := 0
		for ; i < len(words) && regexp.MustCompile(`^\w+=`).MatchString(words[i]); i++ {
			gb.env = append(gb.env, words[i])
		}
		if len(words) < i+2 || words[i] != "go" || words[i+1] != "build" {
			continue
		}
		gb.argv = words[i:]
		for j, w := range gb.argv {
			if w == "-o" && j+1 < len(gb.argv) {
				gb.output = j + 1
			}
		}
		if gb.output == 0 {
			t.Fatalf("line %d: go build without -o", in.line)
		}
		return gb
	}
	t.Fatal("the build stage has no RUN go build")
	return goBuild{}
}

// TestDockerfile checks what can be checked without a daemon: the syntax,
// the stages and their references, a pinned Go matching go.mod, a static
// build, a non-root user owning the data volume, the port, the health
// check through the binary, and that the build context keeps the sources.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := loadDockerfile(t)
	build, runtime := df.stages[0], df.stages[len(df.stages)-1]

	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("go.mod names no go version")
	}
	if base := expand(build.base, df.args); !strings.HasPrefix(base, "golang:"+string(goVersion[1])+"-") {
		t.Errorf("the build stage is FROM %s, want golang:%s-… (go.mod's version, pinned)", base, goVersion[1])
	}
	if !strings.HasPrefix(runtime.base, "gcr.io/distroless/static") && runtime.base != "scratch" {
		t.Errorf("the runtime stage is FROM %s, want distroless/static or scratch (a static binary needs nothing)", runtime.base)
	}
	names := map[string]bool{}
	for _, st := range df.stages {
		for _, in := range st.all("COPY") {
			if from := in.flag("from"); from != "" && !names[from] {
				t.Errorf("line %d: COPY --from=%s names no earlier stage", in.line, from)
			}
		}
		if st.name != "" {
			names[st.name] = true
		}
	}

	gb := buildCommand(t, df)
	if !containsString(gb.env, "CGO_ENABLED=0") {
		t.Errorf("go build runs with %v, want CGO_ENABLED=0", gb.env)
	}
	binary := gb.argv[gb.output]

	users := runtime.all("USER")
	if len(users) == 0 {
		t.Fatal("the runtime stage sets no USER: it would run as root")
	}
	uid, gid, ok := strings.Cut(users[len(users)-1].args, ":")
	if !ok || !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) || !regexp.MustCompile(`^[0-9]+$`).MatchString(gid) {
		t.Errorf("USER %s: want a numeric non-root uid:gid (Kubernetes' runAsNonRoot checks numbers)", users[len(users)-1].args)
	}

	env := envOf(t, runtime)
	dataDir := env["COMPUTE_DATA_DIR"]
	volumes := runtime.all("VOLUME")
	if dataDir == "" || len(volumes) != 1 || !strings.Contains(volumes[0].args, `"`+dataDir+`"`) {
		t.Errorf("COMPUTE_DATA_DIR %q and VOLUME %v should name one directory", dataDir, volumes)
	}
	var dataOwned, binaryCopied bool
	var entry string
	for _, in := range runtime.all("COPY") {
		f := strings.Fields(in.args)
		if in.flag("from") == build.name && f[0] == binary {
			binaryCopied, entry = true, f[len(f)-1]
		}
		if f[len(f)-1] == dataDir && in.flag("chown") == users[len(users)-1].args {
			dataOwned = true
		}
	}
	if !binaryCopied {
		t.Errorf("the runtime stage does not copy %s from the build stage", binary)
	}
	if !dataOwned {
		t.Errorf("no COPY --chown=%s makes %s, so the non-root user could not write its volume", users[len(users)-1].args, dataDir)
	}
	_, port, _ := strings.Cut(env["COMPUTE_ADDR"], ":")
	if exposes := runtime.all("EXPOSE"); len(exposes) != 1 || exposes[0].args != port {
		t.Errorf("EXPOSE %v, want COMPUTE_ADDR's port %s", exposes, port)
	}
	if eps := runtime.all("ENTRYPOINT"); len(eps) != 1 || eps[0].execForm(t)[0] != entry {
		t.Errorf("ENTRYPOINT %v, want [%q]", eps, entry)
	}
	if cmds := runtime.all("CMD"); len(cmds) != 1 || cmds[0].execForm(t)[0] != "serve" {
		t.Errorf("CMD %v, want [\"serve\"]", cmds)
	}
	hcs := runtime.all("HEALTHCHECK")
	if len(hcs) != 1 {
		t.Fatalf("%d HEALTHCHECKs in the runtime stage, want 1", len(hcs))
	}
	hc, ok := strings.CutPrefix(hcs[0].args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %s: want CMD [...]", hcs[0].args)
	}
	if argv := (instruction{cmd: "HEALTHCHECK", args: hc, line: hcs[0].line}).execForm(t); len(argv) < 2 || argv[0] != entry || argv[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %v, want [%q, \"healthcheck\"] (the image has no shell or curl)", argv, entry)
	}
	for _, f := range hcs[0].flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if k != "retries" {
			if _, err := time.ParseDuration(v); err != nil {
				t.Errorf("HEALTHCHECK %s: %v", f, err)
			}
		}
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Split(string(ignore), "\n") {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "cmd/compute/main.go"} {
			if ok, _ := filepath.Match(p, need); ok {
				t.Errorf(".dockerignore's %q leaves %s out of the build context", p, need)
			}
		}
	}
}

// TestDockerfileParserRejects shows the parser TestDockerfile relies on
// refuses malformed files.
func TestDockerfileParserRejects(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, text, want string }{
		{"unknown instruction", "FROM scratch\nCOPPY a b\n", "unknown instruction"},
		{"before FROM", "RUN true\nFROM scratch\n", "before the first FROM"},
		{"dangling continuation", "FROM scratch\nRUN true \\\n", "continuation"},
		{"bad FROM", "FROM a b c d\n", "want IMAGE"},
		{"no arguments", "FROM scratch\nUSER\n", "without arguments"},
	} {
		path := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := parseDockerfile(path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// buildBinary builds the server as the Dockerfile's build stage does (its
// RUN go build line, run in the repository root, which the stage copies
// to its WORKDIR) into dir, and returns the binary's path.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	gb := buildCommand(t, loadDockerfile(t))
	out := filepath.Join(dir, "compute")
	argv := append([]string(nil), gb.argv...)
	argv[gb.output] = out
	gobin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	} else if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		gobin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, argv[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), gb.env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %v: %v\n%s", gb.env, argv, err, b)
	}
	t.Logf("built %s with %v %v", out, gb.env, argv)
	return out
}
