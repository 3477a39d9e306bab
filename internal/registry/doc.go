// Package registry is the dispatch map of the compute server: one erased
// Definition per task type, built from a typed declaration (Type[M, U]) and
// added explicitly to a Registry value.
//
// Task authors write typed Go (their fields struct M, their PATCH struct U,
// a Processor[M]); the engine, the store and the API only ever see the
// erased Definition and never contain per-type code.
package registry
