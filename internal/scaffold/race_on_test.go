//go:build race

package scaffold_test

// raceEnabled tells the end-to-end test to build the copy with -race,
// sharing the build cache of the run that started it.
const raceEnabled = true
