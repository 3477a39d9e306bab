// Package task is the contract shared by every part of the compute server:
// the base Task model, its statuses and the transitions allowed between them,
// what each requested change does to a task (Change), the error categories,
// and the typed errors processors use to steer retries.
//
// It has no dependencies on storage, HTTP or execution, so every other
// package can import it.
package task
