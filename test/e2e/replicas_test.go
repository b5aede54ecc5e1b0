//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/test/e2e/stack"
)

// TestReplicaShutdownLosesNothing: two extauthz replicas behind the shipped Envoy
// (one cluster, two endpoints, its gRPC health checks), a bounded load of valid
// requests, and SIGTERM to one replica in the middle. Its health turns NOT_SERVING at
// once, Envoy stops choosing it, it keeps answering for --shutdown-delay and then
// stops gracefully: not one request may fail.
func TestReplicaShutdownLosesNothing(t *testing.T) {
	dir := t.TempDir()
	policy := stack.Policy(st.BetterAuth.URL, "")
	var reps []*stack.Extauthz
	for i := range 2 {
		e, err := stack.StartExtauthz(tools, dir, fmt.Sprintf("replica-%d", i), policy, stack.ExtauthzOptions{
			LogLevel: "info", Args: []string{"--shutdown-delay", "5s", "--shutdown-timeout", "5s"}})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Proc.Stop()
		reps = append(reps, e)
	}
	envoy, err := stack.StartEnvoyReplicas(tools, dir, "envoy-replicas", []string{reps[0].GRPC, reps[1].GRPC}, fastBackend(t))
	if err != nil {
		t.Fatal(err)
	}
	defer envoy.Proc.Stop()
	tok, err := userA.Token()
	if err != nil {
		t.Fatal(err)
	}
	url := envoy.URL + "/api/" + userA.UUID + "/tasks"

	const workers, maxRequests, maxDuration = 4, 100000, 20 * time.Second
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(maxDuration)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for time.Now().Before(deadline) && sent.Load() < maxRequests {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				if status != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d err %v at %s", status, err, time.Now().Format(time.StampMilli)))
				}
			}
		}()
	}
	// Both replicas serve before the SIGTERM.
	time.Sleep(3 * time.Second)
	before := make([]float64, 2)
	for i, r := range reps {
		before[i], _ = r.Metric("extauthz_decisions_total", `decision="allow"`)
	}
	termAt := time.Now()
	termErr := make(chan error, 1)
	go func() { termErr <- reps[0].Proc.Terminate(20 * time.Second) }()
	err = <-termErr
	exited := time.Since(termAt)
	// And on, past the replica's exit.
	time.Sleep(2 * time.Second)
	after, _ := reps[1].Metric("extauthz_decisions_total", `decision="allow"`)
	close(stop)
	wg.Wait()

	t.Logf("replica shutdown under load: %d requests by %d clients, %d failed; replica 0 had answered %.0f and replica 1 %.0f before SIGTERM; replica 0 exited %s after SIGTERM (err %v); replica 1 answered %.0f in all",
		sent.Load(), workers, failed.Load(), before[0], before[1], exited.Round(10*time.Millisecond), err, after)
	if err != nil {
		t.Errorf("replica 0 did not exit cleanly: %v", err)
	}
	if before[0] == 0 || before[1] == 0 {
		t.Errorf("the load did not reach both replicas before the SIGTERM: %v", before)
	}
	if after <= before[1] {
		t.Errorf("replica 1 took no traffic after the SIGTERM")
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed (first: %v)", n, sent.Load(), firstFailure.Load())
	}
}
