//go:build unix

package queue

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxIdentities bounds the identity slots one directory holds, that is the
// engines that can run at once on one data directory.
const maxIdentities = 1024

// Identity is a stable worker instance name that no two live processes
// share: a name stored in a slot file of a directory, held under an
// exclusive file lock (flock) for as long as the process lives. A
// restarted process takes the first free slot, usually the one its
// previous incarnation held (the kernel drops a dead process's lock), and
// with it that incarnation's name, so the engine recovers the tasks left
// executing under it at once instead of waiting for their leases. A
// second live process on the same directory finds the slot locked and
// takes another one. Names are random, so two machines never make the same
// one; the directory must be local (flock is unreliable on network file
// systems).
type Identity struct {
	// Name is the instance name, for Config.Instance.
	Name string
	f    *os.File
}

// AcquireIdentity takes the first free identity slot in dir (creating dir,
// and a slot's name the first time the slot is used).
func AcquireIdentity(dir string) (*Identity, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("instance identity: %w", err)
	}
	for slot := range maxIdentities {
		path := filepath.Join(dir, fmt.Sprintf("slot-%d.id", slot))
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("instance identity: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // a live process holds it
			}
			return nil, fmt.Errorf("instance identity: locking %s: %w", path, err)
		}
		name, err := slotName(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("instance identity %s: %w", path, err)
		}
		return &Identity{Name: name, f: f}, nil
	}
	return nil, fmt.Errorf("instance identity: all %d slots of %s are held by live processes", maxIdentities, dir)
}

// slotName reads the name in a locked slot file, writing a new one when
// the file is empty (or holds no valid name).
func slotName(f *os.File) (string, error) {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return "", err
	}
	if name := strings.TrimSpace(string(b)); validName(name) {
		return name, nil
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < '!' || r > '~' {
			return '_'
		}
		return r
	}, host)
	random := make([]byte, 6)
	if _, err := rand.Read(random); err != nil {
		return "", err
	}
	name := host + "-" + hex.EncodeToString(random)
	if err := f.Truncate(0); err != nil {
		return "", err
	}
	if _, err := f.WriteAt([]byte(name+"\n"), 0); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return name, nil
}

// validName reports whether a stored name can be used.
func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if r < '!' || r > '~' {
			return false
		}
	}
	return true
}

// Close releases the identity for the next process.
func (i *Identity) Close() error {
	if i == nil || i.f == nil {
		return nil
	}
	err := i.f.Close()
	i.f = nil
	return err
}
