// Command loadbench measures extauthz under load with ghz, against a trivial
// always-allow ext_authz server on the same machine, in one run:
//
//	(a) trivial   the baseline: gRPC and nothing else
//	(a') trivial+  the same, answering with extauthz's response shape (headers, metadata)
//	(a") trivial-verify  the same, verifying each new token's Ed25519 signature
//	              (fed the cold run's requests): the floor of a new token's check
//	(b) warm      extauthz, the same valid token on every call (a browser's case)
//	(c) cold      extauthz, a token it has never seen on every call
//	(d) refresh   as (b), with the JWKS refreshed every second during the load
//	(e) warm-tls  as (b), over mTLS
//	(f) warm-rev  as (b), with a revocation feed polled every second and the
//	              token's session checked against it
//
// The variants alternate within each round, and the medians over the rounds are
// compared, so that a noisy neighbour hurts all of them alike. It also measures the
// resident memory of extauthz holding 100k cached tokens. `make bench` runs it.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
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
	memLimits = flag.String("rss-memlimits", "100MiB,68MiB", "comma-separated GOMEMLIMIT values to read the RSS with, besides Go's defaults (68MiB: what the Helm chart sets for a 100Mi memory limit)")
	podLimits = flag.String("rss-pod-limits", "100Mi", "comma-separated memory limits (Mi) of pod-like memory cgroups to read the RSS in too, with the GOMEMLIMIT the Helm chart sets for each (empty skips)")
	rssTokens = flag.Int("rss-tokens", 100_000, "distinct tokens to cache before reading RSS (0 skips)")
	serverEnv = flag.String("env", "", "comma-separated KEY=VALUE environment of the extauthz processes under load (GOGC=200, say)")
	baseline  = flag.String("baseline", "", "another extauthz binary (an older build) to run the warm and cold variants against too, as warm-base and cold-base")
	only      = flag.String("only", "", "comma-separated variants to run (default: all); the targets table needs all")
	profile   = flag.String("profile", "", "write CPU profiles of extauthz during the first warm and cold runs (warm.pprof, cold.pprof) to this directory")
)

// running holds every server loadbench started, for a signal to stop: they run
// in process groups of their own, which a Ctrl-C in the terminal does not reach.
var running procSet

type procSet struct {
	mu    sync.Mutex
	procs []*stack.Proc
}

func (s *procSet) add(p *stack.Proc) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

func (s *procSet) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		p.Stop()
	}
}

func main() {
	flag.Parse()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "loadbench: %v, stopping the servers\n", s)
		running.stopAll()
		os.Exit(1)
	}()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// variant is one column of the comparison: a named load run, once per round.
type variant struct {
	name string
	run  func(round int) (result, error)
}

func run() error {
	if *ghz == "" || *extauthz == "" || *trivial == "" {
		return fmt.Errorf("-ghz, -extauthz and -trivial are required (make bench sets them)")
	}
	// The servers run in a temp dir: make the binaries' paths absolute.
	for _, f := range []*string{ghz, extauthz, trivial, baseline} {
		if *f == "" {
			continue
		}
		abs, err := filepath.Abs(*f)
		if err != nil {
			return err
		}
		*f = abs
	}
	dir, err := os.MkdirTemp("", "extauthz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := newEnv(dir)
	if err != nil {
		return err
	}
	defer e.stop()
	variants, err := e.variants()
	if err != nil {
		return err
	}
	if *only != "" {
		keep := strings.Split(*only, ",")
		variants = slices.DeleteFunc(variants, func(v variant) bool { return !slices.Contains(keep, v.name) })
	}
	results := map[string][]result{}
	for r := range *rounds {
		for _, v := range variants {
			res, err := v.run(r)
			if err != nil {
				return fmt.Errorf("round %d %s: %w", r+1, v.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-8s %8.0f rps  p50 %6.0f µs  p99 %6.0f µs\n", r+1, v.name, res.RPS, res.P50, res.P99)
			results[v.name] = append(results[v.name], res)
		}
	}
	refreshes, err := e.checkAllAllowed()
	if err != nil {
		return err
	}
	report(variants, results, refreshes, e.feedPolls.Load())
	var rss []rssResult
	if *rssTokens > 0 {
		if rss, err = reportRSS(e); err != nil {
			return err
		}
	}
	if *only == "" {
		targets(results, ed25519Floor(e), rss)
	}
	return nil
}

func report(variants []variant, results map[string][]result, refreshes float64, polls int64) {
	base := result{RPS: math.NaN(), P99: math.NaN()}
	if len(results["trivial"]) > 0 {
		base = median(results["trivial"])
	}
	fmt.Printf("| variant | rps | p50 µs | p99 µs | server CPU µs/call | ghz CPU µs/call | rps vs trivial | p99 vs trivial |\n|---|---|---|---|---|---|---|---|\n")
	for _, v := range variants {
		m := median(results[v.name])
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.1f | %.1f | %.2f× | %.2f× |\n", v.name, m.RPS, m.P50, m.P99, m.CPU, m.Client, m.RPS/base.RPS, m.P99/base.P99)
	}
	fmt.Printf("\nmedians of %d rounds; ghz -c %d on the same machine as the servers; %d-s runs (cold: %d new tokens a run); the refresh variant's JWKS was fetched %v times, the revocation feed polled %d times.\n",
		*rounds, *conc, int(duration.Seconds()), *coldCalls, refreshes, polls)
}

// targets prints the performance goals against this run's medians. Each ratio
// is taken within a round first (the variants of a round ran back to back, so
// they shared the machine's mood), then the median over the rounds.
func targets(results map[string][]result, floor float64, rss []rssResult) {
	ratio := func(a, b string, f func(result) float64) float64 {
		v := make([]float64, 0, len(results[a]))
		for i := range results[a] {
			v = append(v, f(results[a][i])/f(results[b][i]))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	diff := func(a, b string) float64 {
		v := make([]float64, 0, len(results[a]))
		for i := range results[a] {
			v = append(v, results[a][i].CPU-results[b][i].CPU)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rps := func(r result) float64 { return r.RPS }
	trivialCPU := median(results["trivial"]).CPU
	coldCPU := median(results["cold"]).CPU
	pass := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	fmt.Printf("\n| target | goal | measured | |\n|---|---|---|---|\n")
	w := ratio("warm", "trivial+", rps)
	fmt.Printf("| warm rps vs same-shape trivial (trivial+) | ≥ 0.95× | %.2f× | %s |\n", w, pass(w >= 0.95))
	dw := diff("warm", "trivial")
	fmt.Printf("| warm server CPU − trivial's | ≤ 10 µs | %+.1f µs (trivial+ %+.1f) | %s |\n", dw, diff("trivial+", "trivial"), pass(dw <= 10))
	c := ratio("cold", "trivial", rps)
	fmt.Printf("| cold rps vs trivial | ≈ ≥ 0.55× | %.2f× | %s |\n", c, pass(c >= 0.55))
	goal := 1.6*floor + trivialCPU
	fmt.Printf("| cold server CPU | ≤ 1.6 × Ed25519 verify (%.1f µs, idle, in-process) + trivial's (%.1f µs) = %.1f µs | %.1f µs (%.2f× the floor beyond trivial) | %s |\n",
		floor, trivialCPU, goal, coldCPU, (coldCPU-trivialCPU)/floor, pass(coldCPU <= goal))
	// The same, with the floor measured under the same load: trivial verifying
	// each new token's signature, fed the very requests of the cold run.
	verifyCPU := median(results["trivial-verify"]).CPU
	loaded := verifyCPU - trivialCPU
	fmt.Printf("| cold server CPU, floor under load | ≤ 1.6 × (trivial-verify − trivial = %.1f µs) + trivial's = %.1f µs | %.1f µs (%.2f× the floor beyond trivial) | %s |\n",
		loaded, 1.6*loaded+trivialCPU, coldCPU, (coldCPU-trivialCPU)/loaded, pass(coldCPU <= 1.6*loaded+trivialCPU))
	cv := ratio("cold", "trivial-verify", rps)
	fmt.Printf("| cold rps vs trivial-verify (same requests, so ghz's share is the same) | | %.2f× | |\n", cv)
	fmt.Printf("| warm with revocation vs warm | | %.2f× rps, %+.1f µs CPU | |\n", ratio("warm-rev", "warm", rps), diff("warm-rev", "warm"))
	fmt.Printf("| warm over mTLS vs warm | | %.2f× rps, %+.1f µs CPU | |\n", ratio("warm-tls", "warm", rps), diff("warm-tls", "warm"))
	if len(results["warm-base"]) > 0 {
		fmt.Printf("| warm vs -baseline build | | %.2f× rps, %+.1f µs CPU | |\n", ratio("warm", "warm-base", rps), diff("warm", "warm-base"))
		fmt.Printf("| cold vs -baseline build | | %.2f× rps, %+.1f µs CPU | |\n", ratio("cold", "cold-base", rps), diff("cold", "cold-base"))
	}
	for _, r := range rss {
		switch {
		case r.pod != 0:
			// The cgroup holds any pod under its limit; what counts is that it
			// got there without refaulting its own code (thrashing) or an OOM kill.
			fmt.Printf("| RSS, %d tokens checked %s, in a %dMi pod cgroup with the chart's GOMEMLIMIT=%s, without thrashing (< %d major faults) | ≤ 100 MiB | %.1f MiB, %d major faults | %s |\n",
				*rssTokens, times(r.checks), r.pod, r.limit, thrashFaults, r.mib, r.majflt, pass(r.mib <= 100 && r.majflt < thrashFaults))
		case r.limit != "":
			fmt.Printf("| RSS, %d tokens checked %s, bare process, GOMEMLIMIT=%s | ≤ 100 MiB | %.1f MiB | %s |\n", *rssTokens, times(r.checks), r.limit, r.mib, pass(r.mib <= 100))
		}
	}
}

// thrashFaults is the count of major faults while filling the cache past which a
// pod is taken to thrash: a process that fits faults in none, and one squeezed
// onto its own code (a 100Mi pod at 90% GOMEMLIMIT) in thousands.
const thrashFaults = 500

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return "twice"
}

// reportRSS: Go's default GC lets the heap grow to twice the live data; GOMEMLIMIT
// (the Helm chart sets it from the container's memory limit) holds it to a budget.
func reportRSS(e *env) ([]rssResult, error) {
	var out []rssResult
	fmt.Printf("\n| resident memory, %d cached tokens | GC settings | RSS MiB |\n|---|---|---|\n", *rssTokens)
	limits := []string{""}
	for _, l := range strings.Split(*memLimits, ",") {
		if l != "" {
			limits = append(limits, l)
		}
	}
	for _, checks := range []int{1, 2} {
		for i, limit := range limits {
			if checks == 2 && i != 0 && i != len(limits)-1 {
				continue // the default and the tightest limit tell the story
			}
			var environ []string
			label := "Go's defaults"
			if limit != "" {
				environ = []string{"GOMEMLIMIT=" + limit}
				label = "GOMEMLIMIT=" + limit
			}
			r, err := measureRSS(e, *rssTokens, checks, environ, nil)
			if err != nil {
				return nil, err
			}
			fmt.Printf("| %d, %s | %s | %.1f |\n", r.entries, checkedWhat(checks), label, r.mib)
			out = append(out, rssResult{limit: limit, checks: checks, mib: r.mib})
		}
	}
	for _, l := range strings.Split(*podLimits, ",") {
		if l == "" {
			continue
		}
		mi, err := strconv.Atoi(strings.TrimSuffix(l, "Mi"))
		if err != nil || !strings.HasSuffix(l, "Mi") || mi <= 0 {
			return nil, fmt.Errorf("-rss-pod-limits: %q is not a limit in Mi", l)
		}
		for _, checks := range []int{1, 2} {
			pod, err := newPodCgroup(mi)
			if err != nil {
				return nil, err
			}
			r, err := measureRSS(e, *rssTokens, checks, []string{"GOMEMLIMIT=" + pod.gomemlimit()}, pod)
			pod.remove()
			if err != nil {
				return nil, err
			}
			fmt.Printf("| %d, %s | pod cgroup limited to %dMi, GOMEMLIMIT=%s (the chart's); %.1f MiB charged, %.1f MiB of it the binary's mapped pages; filled in %.0f s with %d major faults | %.1f |\n",
				r.entries, checkedWhat(checks), mi, pod.gomemlimit(), float64(r.pod["usage"])/(1<<20), float64(r.pod["mapped_file"])/(1<<20), r.fill.Seconds(), r.majflt, r.mib)
			out = append(out, rssResult{limit: pod.gomemlimit(), checks: checks, mib: r.mib, pod: mi, majflt: r.majflt})
		}
	}
	return out, nil
}

func checkedWhat(checks int) string {
	if checks == 2 {
		return "each checked twice (allow answers memoised, up to their budget)"
	}
	return "each checked once"
}

type rssResult struct {
	limit  string
	checks int
	mib    float64
	pod    int // the pod cgroup's limit in Mi; 0: a bare process
	majflt int64
}

// writeRequests writes the warm request file and one cold file a round.
func (e *env) writeRequests() (warm string, cold []string, err error) {
	warm = filepath.Join(e.dir, "warm.json")
	if err := writeJSON(warm, request(e.warmToken)); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(os.Stderr, "minting %d tokens for %d cold runs...\n", *rounds**coldCalls, *rounds)
	cold = make([]string, *rounds)
	for r := range cold {
		msgs := make([]any, *coldCalls)
		for i := range msgs {
			msgs[i] = request(e.mint(r**coldCalls + i))
		}
		cold[r] = filepath.Join(e.dir, fmt.Sprintf("cold-%d.json", r))
		if err := writeJSON(cold[r], msgs); err != nil {
			return "", nil, err
		}
	}
	return warm, cold, nil
}
