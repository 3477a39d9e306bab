package training

import (
	"archive/zip"
	"bytes"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"sync"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Keys of the example inputs in the artifact store.
const (
	exampleZipKey    = "examples/training/dataset.zip"
	exampleNotZipKey = "examples/training/not-a-zip.zip"
)

// ExampleDataset returns a small training archive: n gradient PNGs of
// 16×16, each with a same-name .txt caption, as fal's trainer expects
// (reference/executors.md §2.5). The bytes are the same on every call.
func ExampleDataset(n int) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
		for y := range 16 {
			for x := range 16 {
				img.SetNRGBA(x, y, color.NRGBA{uint8(16 * x), uint8(16 * y), uint8(60 * i), 255})
			}
		}
		var p bytes.Buffer
		if err := png.Encode(&p, img); err != nil {
			panic(err) // encoding an in-memory image cannot fail
		}
		// No modification time: the archive is byte-identical every time.
		for _, file := range []struct {
			name string
			data []byte
		}{{name: strconv.Itoa(i) + ".png", data: p.Bytes()}, {name: strconv.Itoa(i) + ".txt", data: []byte("a photo of TOK, picture " + strconv.Itoa(i))}} {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: "photo-" + file.name, Method: zip.Deflate})
			if err != nil {
				panic(err) // writing to memory cannot fail
			}
			_, _ = w.Write(file.data)
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

var exampleZip = sync.OnceValue(func() []byte { return ExampleDataset(3) })

// examples are the type's sample tasks for the conformance suite; they run
// on the default executor (the mock), which reads the archive.
func examples() []registry.Example {
	return []registry.Example{
		{
			Name:       "trains on an archive of three images",
			Body:       map[string]any{"images_data_url": artifact.PathPrefix + exampleZipKey, "steps": 20, "trigger_word": "TOK"},
			Inputs:     []registry.ExampleInput{{Key: exampleZipKey, ContentType: "application/zip", Data: exampleZip()}},
			WantStatus: task.StatusCompleted,
		},
		{
			Name:       "an archive that is not a zip",
			Body:       map[string]any{"images_data_url": artifact.PathPrefix + exampleNotZipKey, "steps": 20},
			Inputs:     []registry.ExampleInput{{Key: exampleNotZipKey, ContentType: "application/zip", Data: []byte("these are not images")}},
			WantStatus: task.StatusFailed,
			WantError:  "not a zip archive",
		},
	}
}
