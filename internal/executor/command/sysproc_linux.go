package command

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a process in a process group of its own (its id is
// the process's pid) that the worker can signal as a whole, and kills the
// process when the worker dies. Pdeathsig reaches only the process itself
// (its children keep running: the group record handles them) and fires
// when the OS thread that started it exits, which Go does not do to its
// threads unless a goroutine locked to one exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// machineID identifies this machine's process table: the boot and the pid
// namespace. Process ids recorded under another id mean nothing here.
func machineID() string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// procStat returns the start time (clock ticks since boot) and state
// letter of process pid; ok is false when no such process exists.
func procStat(pid int) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields that follow start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22: starttime
	if err != nil || len(f[0]) != 1 {
		return 0, 0, false
	}
	return start, f[0][0], true
}

// waitNoReap says waitExited waits for a child without reaping it.
const waitNoReap = true

// waitExited blocks until child pid has exited, without reaping it, so
// its process group id stays ours while what is left of the group is
// killed.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
