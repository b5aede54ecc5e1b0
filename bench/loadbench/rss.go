package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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

// measureRSS fills a fresh extauthz's cache with n distinct tokens, over 16
// connections' worth of concurrency, and reads its resident set size.
func measureRSS(e *env, n int, environ []string) (float64, int, error) {
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
				if ok, err := check(c, e.mint(1_000_000+i)); err != nil || !ok {
					failed.Add(1)
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
	var kb float64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%g", &kb)
		}
	}
	return kb / 1024, int(entries), nil
}

func saveProfile(admin, path string, d time.Duration) error {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds())))
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
