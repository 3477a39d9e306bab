package command

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// groups is the record of the process groups a worker started, one file
// per group in a directory of the state directory, removed when the group
// ends. A file whose owner (the worker) is no longer alive on this
// machine names a group left behind by a worker killed with -9: the next
// executor opened on the directory kills it.
type groups struct {
	dir, machine string
	owner        int
	ownerStart   uint64
}

// record is one started group.
type record struct {
	Machine    string `json:"machine"`
	Owner      int    `json:"owner"`
	OwnerStart uint64 `json:"owner_start"`
	PGID       int    `json:"pgid"`
	Start      uint64 `json:"start"`
}

func openGroups(dir, machine string) (*groups, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the process group record: %w", err)
	}
	g := &groups{dir: dir, machine: machine, owner: os.Getpid()}
	g.ownerStart, _, _ = procStat(g.owner)
	return g, nil
}

func (g *groups) file(owner, pgid int) string {
	return filepath.Join(g.dir, fmt.Sprintf("%d-%d.json", owner, pgid))
}

// add records a started group.
func (g *groups) add(pgid int, start uint64) error {
	b, _ := json.Marshal(record{Machine: g.machine, Owner: g.owner, OwnerStart: g.ownerStart, PGID: pgid, Start: start})
	tmp := g.file(g.owner, pgid) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("recording process group %d: %w", pgid, err)
	}
	if err := os.Rename(tmp, g.file(g.owner, pgid)); err != nil {
		return fmt.Errorf("recording process group %d: %w", pgid, err)
	}
	return nil
}

// remove forgets an ended group.
func (g *groups) remove(pgid int) { _ = os.Remove(g.file(g.owner, pgid)) }

// killOrphans kills the recorded groups of this machine whose worker is
// no longer alive, forgets them, and returns the ids of the groups it
// killed.
func (g *groups) killOrphans() []int {
	if g.machine == "" {
		return nil // the process table cannot be read here
	}
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		return nil
	}
	var killed []int
	for _, ent := range ents {
		if !strings.HasSuffix(ent.Name(), ".json") {
			continue
		}
		p := filepath.Join(g.dir, ent.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rec record
		if json.Unmarshal(b, &rec) != nil {
			_ = os.Remove(p)
			continue
		}
		if rec.Machine != g.machine || alive(rec.Owner, rec.OwnerStart) {
			continue // another machine's, or a live worker's
		}
		if killGroupIf(rec.PGID, rec.Start) {
			killed = append(killed, rec.PGID)
		}
		_ = os.Remove(p)
	}
	return killed
}

// alive reports whether the process pid runs (not a zombie) and started
// at start.
func alive(pid int, start uint64) bool {
	s, st, ok := procStat(pid)
	return ok && st != 'Z' && (start == 0 || s == start)
}

// killGroupIf sends SIGKILL to the process group pgid unless its leader's
// pid now belongs to another process (it runs with another start time).
// While any member of a group lives, its id cannot be given to a new
// process, so a group whose leader is gone is still ours. It reports
// whether a signal was delivered.
func killGroupIf(pgid int, start uint64) bool {
	if pgid <= 1 {
		return false
	}
	if s, _, ok := procStat(pgid); ok && start != 0 && s != start {
		return false
	}
	return syscall.Kill(-pgid, syscall.SIGKILL) == nil
}

// group is a started process group: SIGTERM, then SIGKILL after a grace,
// never after the group's leader was reaped (its id may be reused).
type group struct {
	pgid  int
	start uint64

	mu     sync.Mutex
	reaped bool
	termed bool
	timer  *time.Timer
}

// terminate sends SIGTERM to the group and SIGKILL after grace; a second
// call does nothing.
func (g *group) terminate(grace time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reaped || g.termed {
		return
	}
	g.termed = true
	_ = syscall.Kill(-g.pgid, syscall.SIGTERM)
	g.timer = time.AfterFunc(grace, g.kill)
}

// kill sends SIGKILL to the group unless its leader was reaped.
func (g *group) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.reaped {
		_ = syscall.Kill(-g.pgid, syscall.SIGKILL)
	}
}

// leaderExited kills what is left of the group once its leader has
// exited (and before it is reaped): a task's processes end with it.
func (g *group) leaderExited() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
	}
	_ = syscall.Kill(-g.pgid, syscall.SIGKILL) // ESRCH: nothing was left
}

// markReaped records that the leader was reaped: no signal is sent after.
func (g *group) markReaped() {
	g.mu.Lock()
	g.reaped = true
	g.mu.Unlock()
}

// reap waits for cmd's process (the leader of g) to exit, kills what is
// left of its group, waits for its output to be read (closing it with
// closeOutput when a process that left the group holds it), and reaps
// the leader. Where a child can be waited for without reaping it (Linux),
// the group is killed while the leader's id is still ours.
func reap(cmd *exec.Cmd, g *group, read <-chan struct{}, closeOutput func()) {
	if waitNoReap {
		waitExited(cmd.Process.Pid)
	} else {
		_ = cmd.Wait()
	}
	g.leaderExited()
	select {
	case <-read:
	case <-time.After(drainTimeout):
		closeOutput()
		<-read
	}
	if waitNoReap {
		_ = cmd.Wait() // the exit status is read from ProcessState
	}
	g.markReaped()
}
