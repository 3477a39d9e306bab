//go:build unix && !linux

package chaos

import "syscall"

// sysProcAttr has nothing to add where there is no parent-death signal;
// the cleanups kill the processes.
func sysProcAttr() *syscall.SysProcAttr { return nil }
