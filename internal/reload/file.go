package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// FileConfig says which policy file to watch.
type FileConfig struct {
	// Path of the policy file; required.
	Path string
	// Log receives watch errors; slog.Default() when nil.
	Log *slog.Logger
}

// File is a Source that reads a policy file now and again whenever it changes.
type File struct {
	cfg FileConfig
}

// NewFile returns the Source for one policy file; it does not open it yet.
func NewFile(cfg FileConfig) (*File, error) {
	if cfg.Path == "" {
		return nil, errors.New("reload: file path is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &File{cfg: cfg}, nil
}

// settle coalesces a burst of file events (an editor's write, rename, chmod) into
// one read.
const settle = 100 * time.Millisecond

// Run watches the file's directory rather than the file, which is what catches
// kubelet's ConfigMap updates: kubelet swaps a `..data` symlink, so the file's own
// inode never changes. It fails only when the directory cannot be watched.
func (f *File) Run(ctx context.Context, apply ApplyFunc) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", f.cfg.Path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(f.cfg.Path)); err != nil {
		return fmt.Errorf("watching %s: %w", f.cfg.Path, err)
	}
	source := "file:" + f.cfg.Path
	load := func() {
		b, err := os.ReadFile(f.cfg.Path)
		if err != nil {
			err = fmt.Errorf("policy file unreadable: %w", err)
		}
		apply(ctx, Update{Source: source, Doc: b, Err: err})
	}
	load()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("watching %s: event stream closed", f.cfg.Path)
			}
			if timer == nil {
				timer = time.NewTimer(settle)
			} else {
				timer.Reset(settle)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("watching %s: error stream closed", f.cfg.Path)
			}
			f.cfg.Log.Warn("policy file watch error", "source", source, "error", err.Error())
		case <-fire:
			fire = nil
			load()
		}
	}
}
