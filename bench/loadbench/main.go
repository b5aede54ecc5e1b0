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
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	for _, f := range []*string{ghz, extauthz, trivial} {
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
	report(variants, results, refreshes)
	if *rssTokens > 0 {
		return reportRSS(e)
	}
	return nil
}

func report(variants []variant, results map[string][]result, refreshes float64) {
	med := map[string]result{}
	for _, v := range variants {
		med[v.name] = median(results[v.name])
	}
	base := med["trivial"]
	fmt.Printf("| variant | rps | p50 µs | p99 µs | rps vs trivial | p99 vs trivial |\n|---|---|---|---|---|---|\n")
	for _, v := range variants {
		m := med[v.name]
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f× | %.2f× |\n", v.name, m.RPS, m.P50, m.P99, m.RPS/base.RPS, m.P99/base.P99)
	}
	fmt.Printf("\nmedians of %d rounds; ghz -c %d on the same machine as the servers; %d-s runs (cold: %d new tokens a run); the refresh variant's JWKS was fetched %v times.\n",
		*rounds, *conc, int(duration.Seconds()), *coldCalls, refreshes)
}

// reportRSS: Go's default GC lets the heap grow to twice the live data; GOMEMLIMIT
// (the Helm chart sets it from the container's memory limit) holds it to a budget.
func reportRSS(e *env) error {
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
	return nil
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
