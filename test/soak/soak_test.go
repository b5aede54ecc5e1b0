//go:build soak

// Package soak runs extauthz under steady load for a long time (30 minutes by
// default, SOAK_DURATION to change it) with token churn and a JWKS rotation every
// few minutes, sampling its RSS, Go heap and goroutines, and fails if any grows
// past its bound. `make soak`; not part of `make test`.
package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// The bounds, against the median of the first sampled window after warm-up:
// heap in use and RSS may grow by half plus a constant (GC timing and the token
// cache filling to its cap are not leaks), goroutines by a handful.
const (
	warmup          = 5 * time.Minute
	heapFactor      = 1.5
	heapSlackBytes  = 8 << 20
	rssFactor       = 1.5
	rssSlackBytes   = 16 << 20
	goroutinesSlack = 20
	sampleEvery     = 10 * time.Second
	rotateEvery     = 3 * time.Minute
	ratePerSecond   = 400 // checks a second, all workers together
	workers         = 8
	usersPerSecond  = 50 // new users (so new tokens) a second: the token cache churns
)

type sample struct {
	at                time.Duration
	rss, heap         float64
	goroutines        float64
	checks, errs, bad int64
	cacheEntries      float64
}

func TestSoak(t *testing.T) {
	duration := 30 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		duration = d
	}
	if duration < 2*warmup {
		t.Fatalf("SOAK_DURATION %s: at least %s, twice the warm-up", duration, 2*warmup)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "extauthz")
	build := exec.Command("go", "build", "-o", bin, "./cmd/extauthz")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}

	// The key set rotates: [previous, current], signing with current.
	var mu sync.Mutex
	keyN := 0
	cur := tokentest.NewKey(jwa.EdDSA, "k0")
	prev := cur
	jwks := tokentest.NewJWKSServer(t, tokentest.JWKS(cur))
	rotate := func() {
		mu.Lock()
		defer mu.Unlock()
		keyN++
		prev, cur = cur, tokentest.NewKey(jwa.EdDSA, fmt.Sprintf("k%d", keyN))
		jwks.Set(http.StatusOK, tokentest.JWKS(prev, cur))
	}
	signer := func() *tokentest.Key { mu.Lock(); defer mu.Unlock(); return cur }

	doc := fmt.Sprintf("issuers: [{betterAuthURL: %s, refreshInterval: 1m}]\nrules: [{name: tasks, paths: ['/api/{id}/tasks'], owner: {param: id, claim: uuid}}]\n", jwks.URL)
	ext, err := stack.StartExtauthz(stack.Tools{Extauthz: bin}, dir, "extauthz", doc, stack.ExtauthzOptions{LogLevel: "warn", Args: []string{"--token-cache-entries", "20000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Proc.Stop()
	grpcAddr, admin, pid := ext.GRPC, ext.Admin, ext.Proc.Pid()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	// Users: a ring that new users keep replacing, each with a fresh token.
	type user struct{ id, token string }
	var ring [2000]atomic.Pointer[user]
	newUser := func() *user {
		id := uuid.NewString()
		return &user{id: id, token: signer().Sign(tokentest.Claims(jwks.URL, "u-"+id, id, time.Now()), nil)}
	}
	for i := range ring {
		ring[i].Store(newUser())
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var checks, errs, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // churn and rotation
		defer wg.Done()
		churn := time.NewTicker(time.Second / usersPerSecond)
		defer churn.Stop()
		rot := time.NewTicker(rotateEvery)
		defer rot.Stop()
		next := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-rot.C:
				rotate()
			case <-churn.C:
				ring[next%len(ring)].Store(newUser())
				next++
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / ratePerSecond)
			defer tick.Stop()
			for i := w; ; i += workers {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				u := ring[i%len(ring)].Load()
				// One in ten asks for someone else's tasks: a deny.
				path, wantAllow := "/api/"+u.id+"/tasks", true
				if i%10 == 0 {
					path, wantAllow = "/api/"+uuid.NewString()+"/tasks", false
				}
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := client.Check(cctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
					Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: path,
						Headers: map[string]string{"authorization": "Bearer " + u.token}}}}})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				checks.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				if allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK; allowed != wantAllow {
					bad.Add(1)
				}
			}
		}()
	}

	var samples []sample
	start := time.Now()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
sampling:
	for {
		select {
		case <-ctx.Done():
			break sampling
		case <-tick.C:
		}
		m, err := scrape("http://" + admin + "/metrics")
		if err != nil {
			t.Errorf("scrape: %v", err)
			continue
		}
		rss, err := rssBytes(pid)
		if err != nil {
			t.Fatalf("rss: %v", err)
		}
		samples = append(samples, sample{at: time.Since(start), rss: rss, heap: m["go_memstats_heap_inuse_bytes"], goroutines: m["go_goroutines"],
			checks: checks.Load(), errs: errs.Load(), bad: bad.Load(), cacheEntries: m["extauthz_token_cache_entries"]})
	}
	wg.Wait()

	t.Logf("soak: %s, %d checks (%.0f/s), %d errors, %d wrong decisions, %d JWKS rotations", duration, checks.Load(),
		float64(checks.Load())/time.Since(start).Seconds(), errs.Load(), bad.Load(), keyN)
	t.Log("minute  rss_MiB  heap_MiB  goroutines  token_cache_entries  checks")
	for i, s := range samples {
		if i%int(time.Minute/sampleEvery) == int(time.Minute/sampleEvery)-1 {
			t.Logf("%6.0f  %7.1f  %8.1f  %10.0f  %19.0f  %d", s.at.Minutes(), s.rss/(1<<20), s.heap/(1<<20), s.goroutines, s.cacheEntries, s.checks)
		}
	}
	if errs.Load() != 0 || bad.Load() != 0 {
		t.Errorf("%d checks failed and %d were decided wrongly", errs.Load(), bad.Load())
	}
	if keyN < 2 {
		t.Errorf("only %d rotations", keyN)
	}
	var base, tail []sample
	for _, s := range samples {
		switch {
		case s.at >= warmup && s.at < warmup+5*time.Minute:
			base = append(base, s)
		case s.at >= duration-5*time.Minute:
			tail = append(tail, s)
		}
	}
	if len(base) == 0 || len(tail) == 0 {
		t.Fatalf("too few samples: %d base, %d tail", len(base), len(tail))
	}
	med := func(xs []sample, f func(sample) float64) float64 {
		v := make([]float64, len(xs))
		for i, s := range xs {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	peak := func(xs []sample, f func(sample) float64) float64 {
		m := 0.0
		for _, s := range xs {
			m = max(m, f(s))
		}
		return m
	}
	for _, b := range []struct {
		name         string
		f            func(sample) float64
		factor, plus float64
	}{
		{"heap in use", func(s sample) float64 { return s.heap }, heapFactor, heapSlackBytes},
		{"RSS", func(s sample) float64 { return s.rss }, rssFactor, rssSlackBytes},
		{"goroutines", func(s sample) float64 { return s.goroutines }, 1, goroutinesSlack},
	} {
		baseline, last := med(base, b.f), peak(tail, b.f)
		limit := baseline*b.factor + b.plus
		t.Logf("%s: baseline (median of minutes 5-10) %.0f, peak of the last 5 minutes %.0f, bound %.0f", b.name, baseline, last, limit)
		if last > limit {
			t.Errorf("%s grew from %.0f to %.0f, past the bound %.0f", b.name, baseline, last, limit)
		}
	}
}

// scrape reads the unlabelled samples of a Prometheus text exposition.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

func rssBytes(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
