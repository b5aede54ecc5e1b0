// Command loadbench measures extauthz under load with ghz, against a trivial
// always-allow ext_authz server on the same machine, in one run:
//
//	(a) trivial   the baseline: gRPC and nothing else
//	(a') trivial+  the same, answering with extauthz's response shape (headers, metadata)
//	(b) warm      extauthz, the same valid token on every call (a browser's case)
//	(c) cold      extauthz, a token it has never seen on every call
//	(d) refresh   as (b), with the JWKS refreshed every second during the load
//
// The variants alternate within each round, and the medians over the rounds are
// compared, so that a noisy neighbour hurts all of them alike. It also measures the
// resident memory of extauthz holding 100k cached tokens. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const uuid = "6639900d-cfe5-59ec-bd5c-e0e68598457e"

var (
	ghz       = flag.String("ghz", "", "ghz binary")
	extauthz  = flag.String("extauthz", "", "extauthz binary")
	trivial   = flag.String("trivial", "", "trivial server binary")
	rounds    = flag.Int("rounds", 5, "rounds (medians are taken over them)")
	duration  = flag.Duration("duration", 5*time.Second, "length of each trivial/warm/refresh run")
	coldCalls = flag.Int("cold-calls", 12000, "calls (each with a new token) in each cold run")
	conc      = flag.Int("c", 16, "ghz concurrency")
	rssTokens = flag.Int("rss-tokens", 100_000, "distinct tokens to cache before reading RSS (0 skips)")
	profile   = flag.String("profile", "", "write a CPU profile of extauthz during the first warm run to this file")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

type proc struct{ cmd *exec.Cmd }

// server is a running ext_authz server under test.
type server struct {
	grpc, admin string
	p           *proc
}

// env is what every extauthz of the run shares: a temp dir and the issuer.
type env struct {
	dir, issuer string
	key         *tokentest.Key
}

func (e *env) mint(i int) string {
	return e.key.Sign(tokentest.Claims(e.issuer, fmt.Sprintf("user-%d", i), uuid, time.Now()), nil)
}

// startExtauthz serves the benchmark policy: the owner rule on /api/{user_id}/tasks
// and the default identity headers, with the given JWKS refresh interval.
func (e *env) startExtauthz(refresh string, environ ...string) (*server, error) {
	f := filepath.Join(e.dir, "policy-"+refresh+".yaml")
	doc := fmt.Sprintf(`issuers:
  - betterAuthURL: %s
    refreshInterval: %s
identity:
  headers: { x-user-id: sub, x-user-uuid: uuid, x-user-email: email }
rules:
  - name: own-tasks
    paths: ["/api/{user_id}/tasks", "/api/{user_id}/tasks/**"]
    owner: { param: user_id, claim: uuid }
`, e.issuer, refresh)
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		return nil, err
	}
	s := &server{grpc: freeAddr(), admin: freeAddr()}
	var err error
	if s.p, err = start(environ, *extauthz, "serve", "--config", f, "--grpc-addr", s.grpc, "--http-addr", freeAddr(),
		"--admin-addr", s.admin, "--log-level", "error", "--shutdown-delay", "0s", "--admin-pprof"); err != nil {
		return nil, err
	}
	return s, waitReady("http://" + s.admin + "/readyz")
}

func start(env []string, name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd}, nil
}

func (p *proc) stop() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run() error {
	if *ghz == "" || *extauthz == "" || *trivial == "" {
		return fmt.Errorf("-ghz, -extauthz and -trivial are required (make bench sets them)")
	}
	dir, err := os.MkdirTemp("", "extauthz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	protoset := filepath.Join(dir, "authz.protoset")
	if err := writeProtoset(protoset); err != nil {
		return err
	}

	// Better Auth's part: one EdDSA key, its JWKS on loopback.
	key := tokentest.NewKey(jwa.EdDSA, "bench-key")
	jwksL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	issuer := "http://" + jwksL.Addr().String()
	var jwksHits atomic.Int64
	go http.Serve(jwksL, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		jwksHits.Add(1)
		w.Write(tokentest.JWKS(key))
	}))
	e := &env{dir: dir, issuer: issuer, key: key}
	mint := e.mint
	triv := &server{grpc: freeAddr()}
	if triv.p, err = start(nil, *trivial, "-addr", triv.grpc); err != nil {
		return err
	}
	defer triv.p.stop()
	trivFull := &server{grpc: freeAddr()}
	if trivFull.p, err = start(nil, *trivial, "-addr", trivFull.grpc, "-full-response"); err != nil {
		return err
	}
	defer trivFull.p.stop()
	main, err := e.startExtauthz("5m")
	if err != nil {
		return err
	}
	defer main.p.stop()
	refreshing, err := e.startExtauthz("1s")
	if err != nil {
		return err
	}
	defer refreshing.p.stop()
	for _, s := range []*server{triv, trivFull} {
		if err := waitTCP(s.grpc); err != nil {
			return err
		}
	}

	warmTok := mint(-1)
	warmFile := filepath.Join(dir, "warm.json")
	if err := writeJSON(warmFile, request(warmTok)); err != nil {
		return err
	}
	for _, s := range []*server{main, refreshing} {
		if err := mustAllow(s.grpc, warmTok); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "minting %d tokens for %d cold runs...\n", *rounds**coldCalls, *rounds)
	coldFiles := make([]string, *rounds)
	for r := range coldFiles {
		msgs := make([]any, *coldCalls)
		for i := range msgs {
			msgs[i] = request(mint(r**coldCalls + i))
		}
		coldFiles[r] = filepath.Join(dir, fmt.Sprintf("cold-%d.json", r))
		if err := writeJSON(coldFiles[r], msgs); err != nil {
			return err
		}
	}

	variants := []string{"trivial", "trivial+", "warm", "cold", "refresh"}
	results := map[string][]result{}
	for r := range *rounds {
		for _, v := range variants {
			var res result
			var err error
			switch v {
			case "trivial":
				res, err = runGHZ(protoset, triv.grpc, warmFile, "-z", duration.String())
			case "trivial+":
				res, err = runGHZ(protoset, trivFull.grpc, warmFile, "-z", duration.String())
			case "warm":
				var prof chan error
				if *profile != "" && r == 0 {
					prof = make(chan error, 1)
					go func() { prof <- saveProfile("http://"+main.admin, *profile, *duration-time.Second) }()
				}
				res, err = runGHZ(protoset, main.grpc, warmFile, "-z", duration.String())
				if prof != nil {
					if perr := <-prof; perr != nil {
						return perr
					}
				}
			case "cold":
				res, err = runGHZ(protoset, main.grpc, coldFiles[r], "-n", fmt.Sprint(*coldCalls))
			case "refresh":
				res, err = runGHZ(protoset, refreshing.grpc, warmFile, "-z", duration.String())
			}
			if err != nil {
				return fmt.Errorf("round %d %s: %w", r+1, v, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-8s %8.0f rps  p50 %6.0f µs  p99 %6.0f µs\n", r+1, v, res.RPS, res.P50, res.P99)
			results[v] = append(results[v], res)
		}
	}
	// Every extauthz answer must have been an allow: a fast deny would flatter us.
	for _, s := range []*server{main, refreshing} {
		denies, err := metric("http://"+s.admin+"/metrics", `extauthz_decisions_total{decision="deny"`)
		if err != nil {
			return err
		}
		if denies != 0 {
			return fmt.Errorf("extauthz denied %v checks during the benchmark", denies)
		}
	}
	refreshes, _ := metric("http://"+refreshing.admin+"/metrics", `extauthz_jwks_refresh_total{`)

	med := map[string]result{}
	for _, v := range variants {
		med[v] = median(results[v])
	}
	fmt.Printf("| variant | rps | p50 µs | p99 µs | rps vs trivial | p99 vs trivial |\n|---|---|---|---|---|---|\n")
	for _, v := range variants {
		m := med[v]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.2f× |\n", v, m.RPS, m.P50, m.P99, m.RPS/med["trivial"].RPS, m.P99/med["trivial"].P99)
	}
	fmt.Printf("\nmedians of %d rounds; ghz -c %d on the same machine as the servers; %d-s runs (cold: %d new tokens a run); the refresh variant's JWKS was fetched %v times.\n",
		*rounds, *conc, int(duration.Seconds()), *coldCalls, refreshes)

	if *rssTokens > 0 {
		// Go's default GC lets the heap grow to twice the live data; GOMEMLIMIT (the
		// Helm chart sets it from the container's memory limit) holds it to a budget.
		for _, limit := range []string{"", "100MiB"} {
			var environ []string
			label := "default GC settings"
			if limit != "" {
				environ = []string{"GOMEMLIMIT=" + limit}
				label = "GOMEMLIMIT=" + limit
			}
			rss, entries, err := measureRSS(e, *rssTokens, environ)
			if err != nil {
				return err
			}
			fmt.Printf("RSS of extauthz holding %d cached tokens (%s): %.1f MiB\n", entries, label, rss)
		}
	}
	return nil
}

type result struct{ RPS, P50, P99 float64 }

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{pick(func(r result) float64 { return r.RPS }), pick(func(r result) float64 { return r.P50 }), pick(func(r result) float64 { return r.P99 })}
}

func runGHZ(protoset, addr, data string, extra ...string) (result, error) {
	args := append([]string{"--insecure", "--protoset", protoset, "--call", "envoy.service.auth.v3.Authorization.Check",
		"-c", fmt.Sprint(*conc), "--data-file", data, "--format", "json", "--timeout", "5s"}, extra...)
	args = append(args, addr)
	out, err := exec.Command(*ghz, args...).Output()
	if err != nil {
		return result{}, fmt.Errorf("ghz: %w", err)
	}
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
	var res result
	res.RPS = rep.RPS
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
	s, err := e.startExtauthz("5m", environ...)
	if err != nil {
		return 0, 0, err
	}
	defer s.p.stop()
	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	entries, err := metric("http://"+s.admin+"/metrics", "extauthz_token_cache_entries ")
	if err != nil {
		return 0, 0, err
	}
	cacheBytes, _ := metric("http://"+s.admin+"/metrics", "extauthz_token_cache_bytes ")
	fmt.Fprintf(os.Stderr, "token cache: %.0f entries, estimated %.1f MiB (%.0f B a token)\n", entries, cacheBytes/(1<<20), cacheBytes/entries)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.p.cmd.Process.Pid))
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

func metric(url, prefix string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
			sum += v
		}
	}
	return sum, nil
}

func waitReady(url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", url)
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening", addr)
}
