//go:build unix && !linux

package command

import "syscall"

// sysProcAttr puts a process in a process group of its own. Without
// Pdeathsig (Linux only), a worker killed with -9 leaves its processes
// running until they end.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// machineID is empty where the process table cannot be read: recorded
// groups are never killed from the record.
func machineID() string { return "" }

// procStat is not available: no process is known.
func procStat(int) (start uint64, state byte, ok bool) { return 0, 0, false }

// waitNoReap is false: the group is signalled after the leader was
// reaped, when its id may in principle be reused.
const waitNoReap = false

// waitExited is not used (waitNoReap is false).
func waitExited(int) {}
