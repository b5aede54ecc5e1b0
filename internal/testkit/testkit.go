// Package testkit is what tests, the demo and the load benchmark share to run
// servers beside the code under test: free loopback ports, and polling for a
// condition with a deadline instead of sleeping.
package testkit

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago. Another process
// may take it before the caller binds it; where the code under test can bind ":0"
// and report its address, prefer that.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddrs returns n distinct "127.0.0.1:port" addresses that were free a moment ago.
func FreeAddrs(n int) ([]string, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l) // held until all are chosen, so they differ
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// PollInterval is how often Poll and Eventually check.
const PollInterval = 10 * time.Millisecond

// Poll checks cond every PollInterval until it holds or timeout passes, and
// reports whether it held and how long that took.
func Poll(timeout time.Duration, cond func() bool) (bool, time.Duration) {
	start := time.Now()
	for {
		if cond() {
			return true, time.Since(start)
		}
		if time.Since(start) > timeout {
			return false, time.Since(start)
		}
		time.Sleep(PollInterval)
	}
}

// Eventually is Poll for tests: it fails t, naming what, when cond does not hold
// within timeout, and returns how long it took.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	ok, took := Poll(timeout, cond)
	if !ok {
		t.Fatalf("%s: not within %s", what, timeout)
	}
	return took
}
