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

// measureRSS fills a fresh extauthz's cache with n distinct tokens, each checked
// checks times, over 16 connections' worth of concurrency, and reads its resident
// set size.
func measureRSS(e *env, n, checks int, environ []string) (float64, int, error) {
	s, err := e.startExtauthz("5m", nil, environ...)
	if err != nil {
		return 0, 0, err
	}
	defer s.Proc.Stop()
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	c := authv3.NewAuthorizationClient(conn)
	fmt.Fprintf(os.Stderr, "caching %d distinct tokens...\n", n)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				tok := e.mint(1_000_000 + i)
				for range checks {
					if ok, err := check(c, tok); err != nil || !ok {
						failed.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return 0, 0, fmt.Errorf("%d checks failed while filling the cache", failed.Load())
	}
	entries, err := s.Metric("extauthz_token_cache_entries")
	if err != nil {
		return 0, 0, err
	}
	cacheBytes, _ := s.Metric("extauthz_token_cache_bytes")
	fmt.Fprintf(os.Stderr, "token cache: %.0f entries, estimated %.1f MiB (%.0f B a token)\n", entries, cacheBytes/(1<<20), cacheBytes/entries)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Proc.Pid()))
	if err != nil {
		return 0, 0, err
	}
	kb := map[string]float64{}
	for _, line := range strings.Split(string(status), "\n") {
		if name, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "Rss") || name == "VmRSS" {
			var n float64
			fmt.Sscanf(strings.TrimSpace(v), "%g", &n)
			kb[name] = n
		}
	}
	heap, _ := s.Metric("go_memstats_heap_inuse_bytes")
	if *profile != "" {
		name := fmt.Sprintf("heap-%dx.pprof", checks)
		if len(environ) > 0 {
			name = fmt.Sprintf("heap-%s-%dx.pprof", strings.TrimPrefix(environ[0], "GOMEMLIMIT="), checks)
		}
		if err := saveURL(fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", s.Admin), filepath.Join(*profile, name)); err != nil {
			return 0, 0, err
		}
	}
	fmt.Fprintf(os.Stderr, "RSS %.1f MiB: anonymous %.1f MiB (Go heap in use %.1f MiB), file-backed %.1f MiB (the binary's pages)\n",
		kb["VmRSS"]/1024, kb["RssAnon"]/1024, heap/(1<<20), kb["RssFile"]/1024)
	return kb["VmRSS"] / 1024, int(entries), nil
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
