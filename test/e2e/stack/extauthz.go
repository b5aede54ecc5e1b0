package stack

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
)

// Extauthz is a running extauthz.
type Extauthz struct {
	GRPC, HTTP, Admin string
	Proc              *Proc
}

// ExtauthzOptions adjust an extauthz the stack starts.
type ExtauthzOptions struct {
	// Env is added to the process environment (GOMEMLIMIT=…).
	Env []string
	// Args are added to serve's flags (--admin-pprof, …).
	Args []string
	// LogLevel is serve's --log-level; debug when empty.
	LogLevel string
}

// StartExtauthz serves policyDoc and waits until /readyz says ready.
func StartExtauthz(t Tools, dir, name, policyDoc string, o ExtauthzOptions) (*Extauthz, error) {
	cfg := filepath.Join(dir, name+"-policy.yaml")
	if err := os.WriteFile(cfg, []byte(policyDoc), 0o600); err != nil {
		return nil, err
	}
	addrs, err := testkit.FreeAddrs(3)
	if err != nil {
		return nil, err
	}
	e := &Extauthz{GRPC: addrs[0], HTTP: addrs[1], Admin: addrs[2]}
	level := o.LogLevel
	if level == "" {
		level = "debug"
	}
	argv := append([]string{t.Extauthz, "serve", "--config", cfg,
		"--grpc-addr", e.GRPC, "--http-addr", e.HTTP, "--admin-addr", e.Admin,
		"--shutdown-delay", "0s", "--log-level", level}, o.Args...)
	p, err := Start(dir, name, o.Env, argv...)
	if err != nil {
		return nil, err
	}
	e.Proc = p
	if err := WaitHTTP(p, "http://"+e.Admin+"/readyz", 200, 20*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return e, nil
}

// Metric sums the samples of a metric whose label set contains every given
// `name="value"` pair, from a live scrape of /metrics.
func (e *Extauthz) Metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get("http://" + e.Admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
