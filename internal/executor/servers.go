package executor

import "time"

// ServerReporter is implemented by executors that run jobs on servers of
// their own (a ComfyUI pool): the monitoring view lists each server with
// what the executor last learnt of it.
type ServerReporter interface {
	// ServerStates returns the executor's servers, in configuration
	// order.
	ServerStates() []ServerState
}

// ServerState is what an executor of this process last learnt of one of
// its servers.
type ServerState struct {
	URL string
	// Slots is how many jobs the server holds at once.
	Slots int
	// Down is true when the server's last call got no answer (or a
	// proxy's 502/503/504); LastError says what happened then.
	Down      bool
	LastError string
	// CheckedAt is when that call was made; zero when this process has
	// not called the server yet.
	CheckedAt time.Time
}
