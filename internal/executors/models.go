package executors

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// The built-in executors of the local models `make models` installs into
// ModelsDir: command executors in server mode running our scripts with
// node, so each model loads once per worker process.
const (
	// ModelsBackground removes backgrounds (operation remove_background)
	// with @imgly/background-removal-node, an AGPL-3.0 package that runs
	// only in its own process.
	ModelsBackground = "models-bg"
	// ModelsTF runs the TensorFlow.js models: ESRGAN super-resolution and
	// face-api face detection (operations upscale,
	// enhance_faces, detect_faces).
	ModelsTF = "models-tf"
)

// ModelsDir is where `make models` installs the local models for a data
// directory.
func ModelsDir(dataDir string) string { return filepath.Join(dataDir, "models") }

// ModelsInstalled reports whether the local models are installed in dir
// (its node_modules and our scripts are there).
func ModelsInstalled(dir string) bool {
	for _, p := range []string{"node_modules", "bgremove.mjs", "tfmodels.mjs", "protocol.mjs"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

// Models returns the entries of the local models' executors when they are
// installed in dir, else none. Node runs each script from dir (its
// node_modules are beside the scripts).
func Models(dir string) map[string]Entry {
	if !ModelsInstalled(dir) {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	entry := func(script string) Entry {
		settings, _ := json.Marshal(map[string]any{
			"mode":    "server",
			"command": []string{"node", filepath.Join(abs, script)},
			"dir":     abs,
			"inputs":  []string{"image_url"},
			// The models take seconds per image; a cancel needs no grace.
			"grace_seconds": 5,
		})
		return Entry{Type: "command", Settings: settings, Dir: abs, Where: "built in: the local models in " + abs}
	}
	return map[string]Entry{
		ModelsBackground: entry("bgremove.mjs"),
		ModelsTF:         entry("tfmodels.mjs"),
	}
}
