// Package chromium finds the headless browser the browser tests drive
// (the /docs page's and the dashboard's). Without one the test is
// skipped, except under CI=true, where it fails: .ci/run installs
// Debian's chromium.
package chromium

import (
	"os"
	"os/exec"
	"testing"
)

// Path returns COMPUTE_TEST_CHROMIUM, or the first of chromium,
// chromium-browser and google-chrome on the PATH; without one it skips
// the test, or fails it under CI=true.
func Path(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("COMPUTE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("chromium is required in CI (apt-get install chromium, as .ci/run does) but is not on the PATH; or set COMPUTE_TEST_CHROMIUM")
	}
	tb.Skip("chromium not found (install Debian's chromium or set COMPUTE_TEST_CHROMIUM); skipping the browser test")
	return ""
}
