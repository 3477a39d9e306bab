//go:build !unix

package queue

import (
	"fmt"
	"os"

	"github.com/google/uuid"
)

// Identity is a worker instance name. Without flock (on this platform) it
// is not stable: every process gets a new one, and the tasks a dead
// process left are rescued when their leases expire.
type Identity struct {
	// Name is the instance name, for Config.Instance.
	Name string
}

// AcquireIdentity returns a new random identity; dir is not used.
func AcquireIdentity(dir string) (*Identity, error) {
	host, _ := os.Hostname()
	return &Identity{Name: fmt.Sprintf("%s-%s", host, uuid.NewString()[:12])}, nil
}

// Close does nothing.
func (i *Identity) Close() error { return nil }
