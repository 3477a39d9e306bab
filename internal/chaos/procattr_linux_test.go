//go:build linux

package chaos

import "syscall"

// sysProcAttr makes a started process die with the test process, even when
// the test binary itself is killed (a -timeout panic skips the cleanups).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
