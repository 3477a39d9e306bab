package command

import (
	"context"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// contentTypes are the content types of common output extensions, ahead
// of the system's table (which varies between machines).
var contentTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
	".json": "application/json", ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
	".csv": "text/csv; charset=utf-8", ".mp4": "video/mp4", ".wav": "audio/wav", ".mp3": "audio/mpeg",
	".safetensors": "application/octet-stream", ".ckpt": "application/octet-stream", ".pt": "application/octet-stream",
	".bin": "application/octet-stream", ".npz": "application/octet-stream",
}

// contentType returns the content type of a file by its extension.
func contentType(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if ct, ok := contentTypes[ext]; ok {
		return ct
	}
	if ct := mime.TypeByExtension(ext); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// unsafeChars are the characters an artifact name segment may not hold.
var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// artifactName turns a relative path into an artifact name: slash
// separated segments of letters, digits, '.', '_' and '-'.
func artifactName(rel string) string {
	segs := strings.Split(filepath.ToSlash(rel), "/")
	for i, s := range segs {
		s = strings.ReplaceAll(unsafeChars.ReplaceAllString(s, "_"), "..", "_")
		if s == "" || !isAlnum(s[0]) {
			s = "f" + s
		}
		if len(s) > 128 {
			s = s[:128]
		}
		segs[i] = s
	}
	return strings.Join(segs, "/")
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// readBounded reads the file at p, refusing one over limit bytes.
func readBounded(p string, limit int64) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, over max_output_bytes (%d)", filepath.Base(p), fi.Size(), limit)
	}
	return os.ReadFile(p)
}

// collect stores every regular file under dir as an artifact, in path
// order, except the ones in skip (checkpoints already stored).
func (e *Executor) collect(ctx context.Context, job *executor.Job, dir string, skip map[string]bool) ([]task.Artifact, error) {
	var arts []task.Artifact
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || skip[p] {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := readBounded(p, e.s.MaxOutputBytes)
		if err != nil {
			return executor.Errorf(executor.ProviderError, "command: output %s: %w", rel, err)
		}
		name := artifactName(rel)
		art, err := job.Put(ctx, name, contentType(name), data)
		if err != nil {
			return fmt.Errorf("command: storing output %s: %w", name, err)
		}
		arts = append(arts, art)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return arts, nil
}

// savedState is the executor's state in the handle a recovered run was
// handed, when this executor saved it.
func savedState(job *executor.Job, name string) state {
	if job.Saved == nil || job.Saved.Executor != name {
		return state{}
	}
	st, _ := parseState(*job.Saved) // unreadable: no checkpoint
	return st
}

// checkpointDir is where the last checkpoint of a task is kept on this
// machine, for its retries (a retry starts without the handle).
func (e *Executor) checkpointDir(job *executor.Job) string {
	return filepath.Join(e.state, "checkpoints", job.TaskID.String())
}

// checkpointFor returns the local path of the task's last checkpoint: the
// copy kept on this machine, else the one the saved handle names,
// downloaded into dir; "" when there is none. A checkpoint that cannot be
// read is logged and the job starts without one.
func (e *Executor) checkpointFor(ctx context.Context, job *executor.Job, saved state, dir string) (string, error) {
	if ents, err := os.ReadDir(e.checkpointDir(job)); err == nil {
		for _, ent := range ents {
			if ent.Type().IsRegular() && !strings.HasSuffix(ent.Name(), ".tmp") {
				return filepath.Join(e.checkpointDir(job), ent.Name()), nil
			}
		}
	}
	c := saved.Checkpoint
	if c == nil || c.URL == "" || job.OpenInput == nil {
		return "", nil
	}
	data, err := job.OpenInput(ctx, c.URL)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		e.log.Warn("the task's last checkpoint cannot be read; it starts without it", "executor", e.name, "task_id", job.TaskID, "key", c.Key, "error", err)
		return "", nil
	}
	p := filepath.Join(dir, filepath.Base(artifactName(c.Name)))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("command: writing the checkpoint: %w", err)
	}
	return p, nil
}

// checkpoint stores the file at path (relative: to cwd) as the task's
// last checkpoint: an artifact under checkpoints/, a copy on this machine
// for a retry, and its key in the job's handle (saved) for a recovery. A
// file that cannot be read is logged and skipped.
func (e *Executor) checkpoint(ctx context.Context, job *executor.Job, h *executor.Handle, st *state, cwd, path string, stored map[string]bool) error {
	if !filepath.IsAbs(path) {
		path = filepath.Join(cwd, path)
	}
	data, err := readBounded(path, e.s.MaxOutputBytes)
	if err != nil {
		e.log.Warn("a reported checkpoint cannot be read", "executor", e.name, "task_id", job.TaskID, "error", err)
		return nil
	}
	name := artifactName(filepath.Base(path))
	art, err := job.Put(ctx, "checkpoints/"+name, contentType(name), data)
	if err != nil {
		return fmt.Errorf("command: storing checkpoint %s: %w", name, err)
	}
	stored[path] = true
	dir := e.checkpointDir(job)
	if err := e.keepLocal(dir, name, data); err != nil {
		e.log.Warn("the checkpoint is not kept on this machine", "executor", e.name, "task_id", job.TaskID, "error", err)
	}
	st.Checkpoint = &checkpointRef{Name: name, Key: art.Key, URL: art.URL}
	h.State = st.raw()
	if err := job.SaveHandle(ctx, *h); err != nil {
		return fmt.Errorf("command: saving the checkpoint in the handle: %w", err)
	}
	return nil
}

// keepLocal makes data, named name, the only file in dir.
func (e *Executor) keepLocal(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	ents, _ := os.ReadDir(dir)
	for _, ent := range ents {
		if ent.Name() != name+".tmp" {
			_ = os.Remove(filepath.Join(dir, ent.Name()))
		}
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// dropCheckpoint forgets the task's local checkpoint once it needs none
// (it succeeded, or failed for good).
func (e *Executor) dropCheckpoint(job *executor.Job) { _ = os.RemoveAll(e.checkpointDir(job)) }
