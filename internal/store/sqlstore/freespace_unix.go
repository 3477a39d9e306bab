//go:build linux || darwin || freebsd

package sqlstore

import "syscall"

// freeBytes returns the space an unprivileged writer can still use on the
// file system holding dir.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true //nolint:unconvert // field types differ by OS
}
