package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shared holds what the package's tests share: one binary built as the
// Dockerfile builds it, in a directory every user may read.
var shared struct {
	once sync.Once
	dir  string
	bin  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// binary returns the server binary built as the Dockerfile does, building
// it on first use.
func binary(t *testing.T) string {
	t.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "compute-deploy-")
		if err != nil {
			t.Fatal(err)
		}
		// The image's user must reach the binary, as it reaches /compute.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		shared.dir = dir
		shared.bin = buildBinary(t, dir)
	})
	if shared.bin == "" {
		t.Fatal("building the binary failed (see the first test that asked for it)")
	}
	return shared.bin
}

// imageUser is the runtime stage's USER as numbers.
func imageUser(t *testing.T) (uid, gid int) {
	t.Helper()
	df := loadDockerfile(t)
	users := df.stages[len(df.stages)-1].all("USER")
	if len(users) == 0 {
		t.Fatal("the Dockerfile sets no USER")
	}
	u, g, _ := strings.Cut(users[len(users)-1].args, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil {
		t.Fatalf("USER %s is not numeric", users[len(users)-1].args)
	}
	return uid, gid
}

// runAs returns the credential the compute processes run with: the
// image's user when the test runs as root (as CI does here), nothing
// when it runs as another user already (it cannot switch).
func runAs(t *testing.T) *syscall.Credential {
	t.Helper()
	uid, gid := imageUser(t)
	if os.Geteuid() != 0 {
		t.Logf("running as uid %d, not root: the processes run as this user, not as the image's %d", os.Geteuid(), uid)
		return nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
}

// dataDir makes a directory owned by the credential's user, as the
// image's /data is (its volume's mount point).
func dataDir(t *testing.T, cred *syscall.Credential) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		// t.TempDir's parents are private to root: open the path.
		for d := filepath.Dir(dir); d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// proc is one process the test started.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// start runs argv with exactly env (a container sees only its own), as
// cred's user, and stops it by its pid when the test ends.
func start(t *testing.T, name string, argv, env []string, cred *syscall.Credential) *proc {
	t.Helper()
	p := &proc{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		t.Logf("%s output:\n%s", name, p.out.tail(6000))
	})
	return p
}

// stop sends SIGTERM (as docker stop does) and waits; a process still
// running after 45 s is killed and the test fails.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // our own child, by pid
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 45s of SIGTERM", p.name)
	}
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// uids reads the process's real, effective, saved and file-system uids.
func (p *proc) uids(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading %s's status: %v", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no Uid line in %s's status", p.name)
	return ""
}

// checkUser fails unless every uid of the process is cred's user.
func (p *proc) checkUser(t *testing.T, cred *syscall.Credential) {
	t.Helper()
	want := os.Geteuid()
	if cred != nil {
		want = int(cred.Uid)
	}
	w := strconv.Itoa(want)
	got := p.uids(t)
	if got != strings.Join([]string{w, w, w, w}, " ") {
		t.Errorf("%s runs with uids %s, want %d", p.name, got, want)
	}
	t.Logf("%s (pid %d) runs with uids %s", p.name, p.cmd.Process.Pid, got)
	if want == 0 {
		t.Errorf("%s runs as root", p.name)
	}
}

// waitFor retries check every 200 ms until it passes, the process p (if
// any) exits, or the bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, p *proc, check func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = check(ctx)
		cancel()
		if err == nil {
			return
		}
		if p != nil {
			if done, perr := p.exited(); done {
				t.Fatalf("%s: %s exited (%v) before that: %s", what, p.name, perr, p.out.tail(4000))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, bound, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer collects a process's output from its two streams.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
