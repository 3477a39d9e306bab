package comfyfake

import (
	"bytes"
	"fmt"
	"image"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
)

// maxResolution is nodes.py MAX_RESOLUTION, the largest width or height.
const maxResolution = 16384

// value is one output slot of an executed node: an IMAGE batch or a MASK.
type value struct {
	kind   string
	images []*image.NRGBA
}

// inputSpec is one entry of a node's INPUT_TYPES()["required"].
type inputSpec struct {
	name string
	// kind is INT, FLOAT, STRING, IMAGE or COMBO.
	kind string
	// options are a COMBO's allowed values; inputFiles means "the image
	// files directly in input/" instead (LoadImage).
	options    []string
	inputFiles bool
	// extra is the options dictionary (default, min, max, step, …).
	extra map[string]any
}

// exception is a Python exception raised by a node, reported in
// execution_error (executors.md §1.6).
type exception struct {
	typ, message string
	oom          bool
}

// Error is Python's "Type: message".
func (e *exception) Error() string { return e.typ + ": " + e.message }

// oomTips is what ComfyUI appends to an out-of-memory exception's message
// (execution.py execute, executors.md §1.6 "OOM adds tips").
const oomTips = "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."

// uiOutput is what an output node returns for the UI and history.
type uiOutput map[string]any

// runContext is what a node's function may use while executing.
type runContext struct {
	s         *Server
	promptID  string
	maxPixels int
}

// nodeClass is one node type of the catalog (nodes.py NODE_CLASS_MAPPINGS).
type nodeClass struct {
	name, display, category, description, module string
	inputs                                       []inputSpec
	returns                                      []string
	outputNode                                   bool
	// validateArgs are the inputs VALIDATE_INPUTS receives (they skip the
	// min/max/list checks, execution.py validate_inputs); validate returns
	// "" when valid, else the reason.
	validateArgs []string
	validate     func(s *Server, in map[string]any) string
	run          func(rc *runContext, in map[string]any) ([]value, uiOutput, error)
}

func intSpec(name string, def, lo, hi int) inputSpec {
	return inputSpec{name: name, kind: "INT", extra: map[string]any{"default": def, "min": lo, "max": hi, "step": 1}}
}

// newCatalog returns the model-free nodes of executors.md §1.4 plus the
// ImageBlur of the recorded exchange, with nodes.py's input definitions.
func newCatalog() map[string]*nodeClass {
	imageIn := inputSpec{name: "image", kind: "IMAGE", extra: map[string]any{}}
	classes := []*nodeClass{
		{
			name: "EmptyImage", category: "image", module: "nodes",
			inputs: []inputSpec{
				intSpec("width", 512, 1, maxResolution), intSpec("height", 512, 1, maxResolution),
				{name: "batch_size", kind: "INT", extra: map[string]any{"default": 1, "min": 1, "max": 4096}},
				{name: "color", kind: "INT", extra: map[string]any{"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}},
			},
			returns: []string{"IMAGE"},
			run:     runEmptyImage,
		},
		{
			name: "ImageBlur", category: "image/postprocessing", module: "comfy_extras.nodes_post_processing",
			inputs: []inputSpec{
				imageIn,
				intSpec("blur_radius", 1, 1, 31),
				{name: "sigma", kind: "FLOAT", extra: map[string]any{"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}},
			},
			returns: []string{"IMAGE"},
			run: func(_ *runContext, in map[string]any) ([]value, uiOutput, error) {
				return mapImages(in["image"].(value), func(img *image.NRGBA) *image.NRGBA {
					return blurImage(img, int(in["blur_radius"].(int64)), in["sigma"].(float64))
				}), nil, nil
			},
		},
		{
			name: "ImageInvert", category: "image", module: "nodes",
			inputs:  []inputSpec{imageIn},
			returns: []string{"IMAGE"},
			run: func(_ *runContext, in map[string]any) ([]value, uiOutput, error) {
				return mapImages(in["image"].(value), invertImage), nil, nil
			},
		},
		{
			name: "ImageScale", display: "Upscale Image", category: "image/upscaling", module: "nodes",
			inputs: []inputSpec{
				imageIn,
				{name: "upscale_method", kind: "COMBO", options: []string{"nearest-exact", "bilinear", "area", "bicubic", "lanczos"}, extra: map[string]any{}},
				intSpec("width", 512, 0, maxResolution), intSpec("height", 512, 0, maxResolution),
				{name: "crop", kind: "COMBO", options: []string{"disabled", "center"}, extra: map[string]any{}},
			},
			returns: []string{"IMAGE"},
			run:     runImageScale,
		},
		{
			name: "LoadImage", display: "Load Image", category: "image", module: "nodes",
			inputs:       []inputSpec{{name: "image", kind: "COMBO", inputFiles: true, extra: map[string]any{"image_upload": true}}},
			returns:      []string{"IMAGE", "MASK"},
			validateArgs: []string{"image"},
			validate: func(s *Server, in map[string]any) string {
				name, _ := in["image"].(string)
				if _, ok := s.files.get(annotated(name, dirInput)); !ok {
					return "Invalid image file: " + name
				}
				return ""
			},
			run: runLoadImage,
		},
		{
			name: "SaveImage", display: "Save Image", category: "image", module: "nodes",
			description: "Saves the input images to your ComfyUI output directory.",
			inputs: []inputSpec{
				{name: "images", kind: "IMAGE", extra: map[string]any{"tooltip": "The images to save."}},
				{name: "filename_prefix", kind: "STRING", extra: map[string]any{"default": "ComfyUI"}},
			},
			outputNode: true,
			run: func(rc *runContext, in map[string]any) ([]value, uiOutput, error) {
				return saveImages(rc, in["images"].(value), in["filename_prefix"].(string), dirOutput)
			},
		},
		{
			name: "PreviewImage", display: "Preview Image", category: "image", module: "nodes",
			inputs:     []inputSpec{{name: "images", kind: "IMAGE", extra: map[string]any{}}},
			outputNode: true,
			run: func(rc *runContext, in map[string]any) ([]value, uiOutput, error) {
				// nodes.py PreviewImage: prefix "ComfyUI_temp_" + five random letters, into temp/.
				suffix := make([]byte, 5)
				for i := range suffix {
					suffix[i] = "abcdefghijklmnopqrstupvxyz"[rand.IntN(26)]
				}
				return saveImages(rc, in["images"].(value), "ComfyUI_temp_"+string(suffix), dirTemp)
			},
		},
	}
	catalog := make(map[string]*nodeClass, len(classes))
	for _, c := range classes {
		if c.display == "" {
			c.display = c.name
		}
		catalog[c.name] = c
	}
	return catalog
}

func mapImages(v value, f func(*image.NRGBA) *image.NRGBA) []value {
	out := value{kind: "IMAGE", images: make([]*image.NRGBA, len(v.images))}
	for i, img := range v.images {
		out.images[i] = f(img)
	}
	return []value{out}
}

// checkPixels raises the out-of-memory exception a GPU would for a batch
// larger than the fake's MaxPixels (the OOM failure knob of §1.7).
func (rc *runContext) checkPixels(width, height, batch int) error {
	if rc.maxPixels > 0 && int64(width)*int64(height)*int64(batch) > int64(rc.maxPixels) {
		return &exception{typ: "torch.OutOfMemoryError", oom: true,
			message: fmt.Sprintf("Allocation on device 0 would exceed allowed memory. (out of memory)\nCurrently allocated     : %d pixels", width*height*batch)}
	}
	return nil
}

func runEmptyImage(rc *runContext, in map[string]any) ([]value, uiOutput, error) {
	w, h, batch := int(in["width"].(int64)), int(in["height"].(int64)), int(in["batch_size"].(int64))
	if err := rc.checkPixels(w, h, batch); err != nil {
		return nil, nil, err
	}
	out := value{kind: "IMAGE"}
	for range batch {
		out.images = append(out.images, solidImage(w, h, in["color"].(int64)))
	}
	return []value{out}, nil, nil
}

func runImageScale(rc *runContext, in map[string]any) ([]value, uiOutput, error) {
	src := in["image"].(value)
	w, h := int(in["width"].(int64)), int(in["height"].(int64))
	if err := rc.checkPixels(max(w, 1), max(h, 1), len(src.images)); err != nil {
		return nil, nil, err
	}
	method, crop := in["upscale_method"].(string), in["crop"].(string)
	return mapImages(src, func(img *image.NRGBA) *image.NRGBA {
		return scaleImage(img, method, w, h, crop)
	}), nil, nil
}

func runLoadImage(rc *runContext, in map[string]any) ([]value, uiOutput, error) {
	name := in["image"].(string)
	data, ok := rc.s.files.get(annotated(name, dirInput))
	if !ok {
		return nil, nil, &exception{typ: "FileNotFoundError", message: fmt.Sprintf("[Errno 2] No such file or directory: '%s'", name)}
	}
	// Check the size before decoding, so a small file cannot claim a huge picture.
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil {
		if err := rc.checkPixels(cfg.Width, cfg.Height, 1); err != nil {
			return nil, nil, err
		}
	}
	img, err := decodeImage(data)
	if err != nil {
		return nil, nil, &exception{typ: "PIL.UnidentifiedImageError", message: err.Error()}
	}
	return []value{{kind: "IMAGE", images: []*image.NRGBA{img}}, {kind: "MASK"}}, nil, nil
}

// saveImages is SaveImage/PreviewImage (nodes.py save_images): one file
// per image of the batch, named {prefix}_{counter:05}_.png, counter one
// past the highest already in the folder (folder_paths.get_save_image_path)
// and incremented per image, "%batch_num%" in the prefix replaced by the
// image's index; listed in batch order, executors.md §1.3.
func saveImages(rc *runContext, images value, prefix, dir string) ([]value, uiOutput, error) {
	if len(images.images) == 0 {
		return nil, nil, &exception{typ: "IndexError", message: "list index out of range"}
	}
	first := images.images[0].Rect
	prefix = strings.NewReplacer("%width%", fmt.Sprint(first.Dx()), "%height%", fmt.Sprint(first.Dy())).Replace(prefix)
	clean := path.Clean(prefix)
	subfolder, base := path.Dir(clean), path.Base(clean)
	if subfolder == "." {
		subfolder = ""
	}
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return nil, nil, &exception{typ: "Exception", message: "**** ERROR: Saving image outside the output folder is not allowed."}
	}
	files := make([][]byte, len(images.images))
	for i, img := range images.images {
		data, err := encodePNG(img)
		if err != nil {
			return nil, nil, &exception{typ: "OSError", message: err.Error()}
		}
		files[i] = data
	}
	results := make([]any, 0, len(files))
	for _, name := range rc.s.files.saveBatch(dir, subfolder, base, files) {
		results = append(results, map[string]any{"filename": name, "subfolder": subfolder, "type": dir})
	}
	return nil, uiOutput{"images": results}, nil
}

// objectInfo is GET /object_info's entry for one class (server.py node_info).
func (c *nodeClass) objectInfo(s *Server) map[string]any {
	required := map[string]any{}
	order := make([]string, 0, len(c.inputs))
	for _, in := range c.inputs {
		required[in.name] = in.config(s)
		order = append(order, in.name)
	}
	returns := c.returns
	if returns == nil {
		returns = []string{}
	}
	isList := make([]bool, len(returns))
	return map[string]any{
		"input":          map[string]any{"required": required},
		"input_order":    map[string]any{"required": order},
		"output":         returns,
		"output_is_list": isList,
		"output_name":    returns,
		"name":           c.name,
		"display_name":   c.display,
		"description":    c.description,
		"python_module":  c.module,
		"category":       c.category,
		"output_node":    c.outputNode,
	}
}

// config is the input's INPUT_TYPES tuple, (type, options) as a JSON list.
func (in inputSpec) config(s *Server) []any {
	var typ any = in.kind
	if in.kind == "COMBO" {
		opts := in.options
		if in.inputFiles {
			opts = s.files.inputImages()
		}
		typ = opts
	}
	return []any{typ, in.extra}
}

// inputImages lists the image files directly in input/, sorted, which is
// LoadImage's list of choices (nodes.py LoadImage.INPUT_TYPES).
func (f *fileStore) inputImages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := []string{}
	for key := range f.files {
		rest, ok := strings.CutPrefix(key, dirInput+"/")
		if !ok || strings.Contains(rest, "/") {
			continue
		}
		switch strings.ToLower(path.Ext(rest)) {
		case ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff":
			names = append(names, rest)
		}
	}
	sort.Strings(names)
	return names
}
