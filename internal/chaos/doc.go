// Package chaos holds the chaos tests of the compute server: real
// `compute worker` processes are killed with SIGKILL, frozen with SIGSTOP
// past their lease and restarted while they work through a queue of echo
// tasks, on PostgreSQL and on SQLite; afterwards every task must have
// completed exactly once, with no write of a superseded run in the
// database (chaos_test.go). TestComfyUIEndToEnd (comfyui_e2e_test.go) runs
// the comfyui executor through the real binaries the same way: two fake
// ComfyUI servers in processes of their own, one killed mid-run, a worker
// killed with SIGKILL mid-run, a cancel pushed to the server. The package
// has no non-test code.
package chaos
