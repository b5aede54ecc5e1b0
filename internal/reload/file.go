package reload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchFile applies path now and again whenever it changes, until ctx ends. It
// watches the file's directory rather than the file, which is what catches kubelet's
// ConfigMap updates: kubelet swaps a `..data` symlink, so the file's own inode never
// changes. Bursts of events are coalesced, and unchanged content is not re-applied.
func (r *Reloader) WatchFile(ctx context.Context, path string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", path, err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return fmt.Errorf("watching %s: %w", path, err)
	}
	source := "file:" + path
	load := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			r.Metrics.PolicyRejected(source)
			r.log().Error("policy file unreadable; the previous policy stays in force", "source", source, "error", err.Error())
			return
		}
		_, _, _ = r.Apply(ctx, source, b)
	}
	load()
	go func() {
		defer w.Close()
		const settle = 100 * time.Millisecond
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				if timer == nil {
					timer = time.NewTimer(settle)
				} else {
					timer.Reset(settle)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log().Warn("policy file watch error", "source", source, "error", err.Error())
			case <-fire:
				fire = nil
				load()
			}
		}
	}()
	return nil
}
