package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// podCgroup is a memory cgroup standing in for a pod's memory limit: the kernel
// holds everything charged to it (the heap and the binary's page-cache pages alike)
// under the limit, reclaiming file pages before it kills, as it does for a
// container. Outside one, nothing presses on the binary's ~30 MiB of file-backed
// pages, which every Go binary's package initialisers map, so a bare process's RSS
// overstates what a pod holds.
//
// It uses the cgroup v1 memory controller, the one this project's CI machines
// have; on a cgroup v2-only host -rss-pod-limits= skips it.
type podCgroup struct {
	dir     string
	limitMi int
}

func newPodCgroup(limitMi int) (*podCgroup, error) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var rel string
	found := false
	for _, line := range strings.Split(string(own), "\n") {
		// hierarchy-ID:controllers:path
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			rel, found = parts[2], true
		}
	}
	base := filepath.Join("/sys/fs/cgroup/memory", rel)
	if _, err := os.Stat(filepath.Join(base, "memory.limit_in_bytes")); !found || err != nil {
		return nil, fmt.Errorf("-rss-pod-limits needs the cgroup v1 memory controller (none at %s); -rss-pod-limits= skips the pod rows", base)
	}
	c := &podCgroup{dir: filepath.Join(base, fmt.Sprintf("extauthz-bench-%d-%dMi", os.Getpid(), limitMi)), limitMi: limitMi}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limitMi<<20)), 0); err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

// gomemlimit is what the Helm chart sets for this limit: the limit less 32 MiB, at
// most 90% and at least half of it.
func (c *podCgroup) gomemlimit() string {
	return fmt.Sprintf("%dMiB", max(c.limitMi/2, min(c.limitMi*9/10, c.limitMi-32)))
}

// wrapper writes a script that joins the cgroup, copies bin there (so that its
// page-cache pages are charged to the cgroup, the strict case: a container's image
// may instead be charged to whoever unpacked it) and runs the copy.
func (c *podCgroup) wrapper(dir, bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	copied := filepath.Join(dir, fmt.Sprintf("extauthz-pod-%dMi", c.limitMi))
	script := filepath.Join(dir, fmt.Sprintf("in-pod-%dMi.sh", c.limitMi))
	body := fmt.Sprintf("#!/bin/sh\necho $$ > %q || exit 1\ncp %q %q || exit 1\nexec %q \"$@\"\n",
		filepath.Join(c.dir, "cgroup.procs"), abs, copied, copied)
	return script, os.WriteFile(script, []byte(body), 0o755)
}

// stats reads the cgroup's usage, peak, OOM kills and memory.stat counters.
func (c *podCgroup) stats() (map[string]int64, error) {
	st := map[string]int64{}
	for _, f := range []struct{ file, key string }{
		{"memory.usage_in_bytes", "usage"}, {"memory.max_usage_in_bytes", "peak"}, {"memory.failcnt", "failcnt"},
	} {
		b, err := os.ReadFile(filepath.Join(c.dir, f.file))
		if err != nil {
			return nil, err
		}
		if st[f.key], err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
	}
	for _, f := range []string{"memory.stat", "memory.oom_control"} {
		b, err := os.ReadFile(filepath.Join(c.dir, f))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), " "); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					st[k] = n
				}
			}
		}
	}
	if _, ok := st["oom_kill"]; !ok {
		return nil, errors.New("memory.oom_control has no oom_kill count (kernel before 4.13?)")
	}
	return st, nil
}

// remove deletes the cgroup once its process has gone.
func (c *podCgroup) remove() {
	for range 50 {
		if err := os.Remove(c.dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "could not remove cgroup %s\n", c.dir)
}

// majorFaults is a process's major page faults so far (reads from disk: the
// binary's pages refaulted after the cgroup's reclaim, when it thrashes).
func majorFaults(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces: fields count from after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 10 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.ParseInt(f[9], 10, 64) // majflt is field 12; f[0] is field 3
}
