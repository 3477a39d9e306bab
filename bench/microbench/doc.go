// Package microbench holds `go test -bench` benchmarks that isolate single
// costs found while profiling computebench, so a fix can be judged without
// the whole program. Run them with `go test -bench . ./microbench` in bench/.
package microbench
