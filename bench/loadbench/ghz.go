package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// result is one load run: throughput, latency (µs) and the server's CPU time per
// call (µs, user + system, read from /proc).
type result struct {
	RPS, P50, P99, CPU float64
	// Client is ghz's own CPU time per call (µs): it shares the cores.
	Client float64
	count  int
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		RPS: pick(func(r result) float64 { return r.RPS }), P50: pick(func(r result) float64 { return r.P50 }),
		P99: pick(func(r result) float64 { return r.P99 }), CPU: pick(func(r result) float64 { return r.CPU }),
		Client: pick(func(r result) float64 { return r.Client }),
	}
}

// withCPU runs one load run against the process pid and adds its CPU time per call.
func withCPU(pid int, run func() (result, error)) (result, error) {
	before, err := cpuTime(pid)
	if err != nil {
		return result{}, err
	}
	res, err := run()
	if err != nil {
		return res, err
	}
	after, err := cpuTime(pid)
	if err != nil {
		return result{}, err
	}
	if res.count > 0 {
		res.CPU = float64(after-before) / float64(res.count) / 1e3
	}
	return res, nil
}

// cpuTime is a process's user + system CPU time, all threads, in nanoseconds
// (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 1/100 s).
func cpuTime(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from the ')' after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, err
	}
	return (utime + stime) * int64(10*time.Millisecond), nil
}

func runGHZ(protoset, addr, data string, extra ...string) (result, error) {
	// Plaintext unless the variant gives ghz a CA (TLS).
	transport := []string{"--insecure"}
	if slices.Contains(extra, "--cacert") {
		transport = nil
	}
	args := append(transport, "--protoset", protoset, "--call", "envoy.service.auth.v3.Authorization.Check",
		"-c", fmt.Sprint(*conc), "--data-file", data, "--format", "json", "--timeout", "5s")
	args = append(args, extra...)
	args = append(args, addr)
	cmd := exec.Command(*ghz, args...)
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("ghz: %w", err)
	}
	ghzCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var rep struct {
		Count   int     `json:"count"`
		RPS     float64 `json:"rps"`
		Latency []struct {
			Percentage int     `json:"percentage"`
			Latency    float64 `json:"latency"`
		} `json:"latencyDistribution"`
		Status map[string]int `json:"statusCodeDistribution"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return result{}, fmt.Errorf("ghz output: %w", err)
	}
	// A timed run (-z) cuts the calls in flight when time is up; those end
	// Unavailable or Canceled. Anything else, or more than that, is a failure.
	cut := rep.Status["Unavailable"] + rep.Status["Canceled"]
	if rep.Count == 0 || rep.Status["OK"]+cut != rep.Count || cut > *conc {
		return result{}, fmt.Errorf("ghz: %d calls, status %v", rep.Count, rep.Status)
	}
	res := result{RPS: rep.RPS, count: rep.Count, Client: float64(ghzCPU.Microseconds()) / float64(rep.Count)}
	for _, l := range rep.Latency {
		switch l.Percentage {
		case 50:
			res.P50 = l.Latency / 1e3
		case 99:
			res.P99 = l.Latency / 1e3
		}
	}
	return res, nil
}

func request(tok string) map[string]any {
	return map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
		"method": "GET", "path": "/api/" + uuid + "/tasks", "host": "api.example.com",
		"headers": map[string]string{"authorization": "Bearer " + tok, "x-request-id": "bench"},
	}}}}
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// writeProtoset writes the Authorization service and its imports as a
// FileDescriptorSet, from the descriptors compiled into go-control-plane (which ships
// no .proto files).
func writeProtoset(path string) error {
	fd, err := protoregistry.GlobalFiles.FindFileByPath("envoy/service/auth/v3/external_auth.proto")
	if err != nil {
		return err
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	b, err := proto.Marshal(set)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
