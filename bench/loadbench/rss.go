package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func check(c authv3.AuthorizationClient, tok string) (bool, error) {
	resp, err := c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/" + uuid + "/tasks", Host: "api.example.com",
			Headers: map[string]string{"authorization": "Bearer " + tok},
		}}}})
	if err != nil {
		return false, err
	}
	return resp.GetOkResponse() != nil, nil
}

func mustAllow(addr, tok string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ok, err := check(authv3.NewAuthorizationClient(conn), tok)
	if err != nil || !ok {
		return fmt.Errorf("sanity check: allowed=%v err=%v", ok, err)
	}
	return nil
}

// fillTimeout bounds the filling of the cache for one RSS reading; 100k tokens take
// about 30 s with room to spare.
const fillTimeout = 3 * time.Minute

// rssReading is what measureRSS read.
type rssReading struct {
	mib     float64 // VmRSS
	entries int
	pod     map[string]int64 // the pod cgroup's counters; nil outside one
	majflt  int64            // major faults while the cache filled
	fill    time.Duration    // how long filling took
}

// measureRSS fills a fresh extauthz's cache with n distinct tokens, each checked
// checks times, over 16 connections' worth of concurrency, and reads its resident
// set size. With pod, extauthz runs in that memory cgroup.
func measureRSS(e *env, n, checks int, environ []string, pod *podCgroup) (rssReading, error) {
	var r rssReading
	bin := *extauthz
	if pod != nil {
		var err error
		if bin, err = pod.wrapper(e.dir, bin); err != nil {
			return r, err
		}
	}
	s, err := e.startBinary(bin, e.policy("5m", ""), nil, environ...)
	if err != nil {
		return r, err
	}
	defer s.Proc.Stop()
	majBefore, err := majorFaults(s.Proc.Pid())
	if err != nil {
		return r, err
	}
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return r, err
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	fmt.Fprintf(os.Stderr, "caching %d distinct tokens...\n", n)
	var next, filled, failed atomic.Int64
	var wg sync.WaitGroup
	// Bounded: in a pod cgroup too small, the binary's pages thrash and filling
	// would take hours.
	start := time.Now()
	deadline := start.Add(fillTimeout)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n && time.Now().Before(deadline); i = int(next.Add(1)) {
				tok := e.mint(1_000_000 + i)
				for range checks {
					if ok, err := check(c, tok); err != nil || !ok {
						failed.Add(1)
					}
				}
				filled.Add(1)
			}
		}()
	}
	wg.Wait()
	r.fill = time.Since(start)
	if int(filled.Load()) < n {
		return r, fmt.Errorf("filling the cache took over %s (%d of %d tokens): too little memory, the binary's pages thrashing", fillTimeout, filled.Load(), n)
	}
	if failed.Load() > 0 {
		return r, fmt.Errorf("%d checks failed while filling the cache", failed.Load())
	}
	entries, err := s.Metric("extauthz_token_cache_entries")
	if err != nil {
		return r, err
	}
	r.entries = int(entries)
	cacheBytes, _ := s.Metric("extauthz_token_cache_bytes")
	fmt.Fprintf(os.Stderr, "token cache: %.0f entries, estimated %.1f MiB (%.0f B a token)\n", entries, cacheBytes/(1<<20), cacheBytes/entries)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Proc.Pid()))
	if err != nil {
		return r, err
	}
	kb := map[string]float64{}
	for _, line := range strings.Split(string(status), "\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "Rss") || name == "VmRSS" {
			var n float64
			fmt.Sscanf(strings.TrimSpace(v), "%g", &n)
			kb[name] = n
		}
	}
	majAfter, err := majorFaults(s.Proc.Pid())
	if err != nil {
		return r, err
	}
	r.majflt = majAfter - majBefore
	heap, _ := s.Metric("go_memstats_heap_inuse_bytes")
	if *profile != "" {
		name := fmt.Sprintf("heap-%dx.pprof", checks)
		if len(environ) > 0 {
			name = fmt.Sprintf("heap-%s-%dx.pprof", strings.TrimPrefix(environ[0], "GOMEMLIMIT="), checks)
		}
		if pod != nil {
			name = fmt.Sprintf("heap-pod-%dMi-%dx.pprof", pod.limitMi, checks)
		}
		if err := saveURL(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", s.Admin), filepath.Join(*profile, name)); err != nil {
			return r, err
		}
	}
	fmt.Fprintf(os.Stderr, "RSS %.1f MiB: anonymous %.1f MiB (Go heap in use %.1f MiB), file-backed %.1f MiB (the binary's pages); filled in %.0f s with %d major faults\n",
		kb["VmRSS"]/1024, kb["RssAnon"]/1024, heap/(1<<20), kb["RssFile"]/1024, r.fill.Seconds(), r.majflt)
	r.mib = kb["VmRSS"] / 1024
	if pod != nil {
		if r.pod, err = pod.stats(); err != nil {
			return r, err
		}
		const mib = 1 << 20
		fmt.Fprintf(os.Stderr, "pod cgroup (limit %dMi): usage %.1f MiB (anonymous %.1f, page cache %.1f of which mapped %.1f), peak %.1f MiB, %d times at the limit, %d OOM kills, %d file pages refaulted\n",
			pod.limitMi, float64(r.pod["usage"])/mib, float64(r.pod["rss"])/mib, float64(r.pod["cache"])/mib, float64(r.pod["mapped_file"])/mib,
			float64(r.pod["peak"])/mib, r.pod["failcnt"], r.pod["oom_kill"], r.pod["workingset_refault_file"])
		if r.pod["oom_kill"] > 0 {
			return r, fmt.Errorf("extauthz was OOM-killed in the %dMi pod cgroup", pod.limitMi)
		}
	}
	return r, nil
}

func saveProfile(admin, path string, d time.Duration) error {
	return saveURL(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds())), path)
}

func saveURL(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ed25519Floor is the CPU time of one Ed25519 signature verification of the warm
// token, in µs: the least a check of a token never seen before can cost.
func ed25519Floor(e *env) float64 {
	i := strings.LastIndexByte(e.warmToken, '.')
	sig, err := base64.RawURLEncoding.DecodeString(e.warmToken[i+1:])
	if err != nil {
		panic(err)
	}
	msg := []byte(e.warmToken[:i])
	var pub ed25519.PublicKey
	if err := e.key.JWK().Raw(&pub); err != nil {
		panic(err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		panic("the warm token does not verify")
	}
	r := testing.Benchmark(func(b *testing.B) {
		for range b.N {
			ed25519.Verify(pub, msg, sig)
		}
	})
	return float64(r.NsPerOp()) / 1e3
}
