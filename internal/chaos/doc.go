// Package chaos holds the chaos tests of the compute server: real
// `compute worker` processes are killed with SIGKILL, frozen with SIGSTOP
// past their lease and restarted while they work through a queue of echo
// tasks, on PostgreSQL and on SQLite; afterwards every task must have
// completed exactly once, with no write of a superseded run in the
// database. The package has no non-test code; see chaos_test.go.
package chaos
