package revocation_test

// A Go copy of the plugin's paging (integrations/better-auth/src/index.ts: the
// overlap window, the page size, the cursor, "<at>!" after a full page, bans kept
// until lifted), to test the consumer against it.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
	"github.com/betterauth-extauthz/extauthz/internal/testkit"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

const overlapMS = 5000 // OVERLAP_MS

// pluginSim serves exactly what the plugin's endpoint serves, with a settable
// PAGE_SIZE.
type pluginSim struct {
	*httptest.Server
	mu       sync.Mutex
	rows     []revocation.Entry
	pageSize int
}

func newPluginSim(t *testing.T, pageSize int) *pluginSim {
	p := &pluginSim{pageSize: pageSize}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !revocation.SecretMatches(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), secret) {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		raw := r.URL.Query().Get("since")
		exact := strings.HasSuffix(raw, "!")
		since, _ := strconv.ParseInt(strings.TrimSuffix(raw, "!"), 10, 64)
		from := max(0, since-overlapMS)
		if exact {
			from = since
		}
		rows := append([]revocation.Entry(nil), p.rows...)
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].At < rows[j].At })
		var out []revocation.Entry
		for _, e := range rows {
			if e.At >= from && len(out) < p.pageSize {
				out = append(out, e)
			}
		}
		last := since
		if len(out) > 0 {
			last = out[len(out)-1].At
		}
		if out == nil {
			out = []revocation.Entry{}
		}
		more := len(out) == p.pageSize
		cursor := strconv.FormatInt(max(last, since), 10)
		if more {
			cursor += "!"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"cursor": cursor, "entries": out, "more": more})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pluginSim) add(es ...revocation.Entry) {
	p.mu.Lock()
	p.rows = append(p.rows, es...)
	p.mu.Unlock()
}

// A burst larger than a page within OVERLAP_MS (a revoke-sessions of a user with
// more sessions than a page holds) is read page by page: the cursor after a full
// page skips the overlap, so a later sign-out is still seen.
func TestBurstLargerThanAPage(t *testing.T) {
	const pageSize = 4 // PAGE_SIZE is 10000 in the plugin; the logic is the same
	sim := newPluginSim(t, pageSize)
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	t0 := clk.Now().UnixMilli()
	for i := range 3 * pageSize {
		sim.add(revocation.Entry{Kind: revocation.KindSession, SessionID: "burst" + strconv.Itoa(i), At: t0 + int64(i)})
	}
	f := startFeed(t, sim.URL, clk, false)
	iat := clk.Now().Add(-time.Minute)

	// Much later, alice signs out.
	clk.Add(10 * time.Second)
	sim.add(revocation.Entry{Kind: revocation.KindSession, SessionID: "alice-s1", UserID: "alice", At: clk.Now().UnixMilli()})
	ok, _ := testkit.Poll(2*time.Second, func() bool {
		code, _ := f.Check("alice-s1", "alice", iat, time.Time{})
		return code == reason.SessionRevoked || code == reason.RevocationUnavailable
	})
	if !ok {
		code, _ := f.Check("alice-s1", "alice", iat, time.Time{})
		t.Errorf("signed-out session still allowed (Check=%q) after a burst", code)
	}
}

// More than a page of entries in one millisecond cannot be paged past: the feed
// then counts as failing, and past maxStale fails closed instead of serving a
// state that may miss revocations.
func TestFullPageWithoutProgressFailsClosed(t *testing.T) {
	const pageSize = 4
	sim := newPluginSim(t, pageSize)
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	for i := range pageSize + 1 {
		sim.add(revocation.Entry{Kind: revocation.KindSession, SessionID: "same-ms" + strconv.Itoa(i), At: clk.Now().UnixMilli()})
	}
	f := startFeed(t, sim.URL, clk, false)
	iat := clk.Now().Add(-time.Minute)
	clk.Add(2 * time.Minute) // past maxStale, counted from the last poll that made progress
	testkit.Eventually(t, "fail closed", 5*time.Second, func() bool {
		code, _ := f.Check("other", "alice", iat, time.Time{})
		return code == reason.RevocationUnavailable
	})
}

// The plugin prunes what outlives every JWT but keeps bans until they are lifted,
// so a replica that starts long after a permanent ban agrees with one that saw it.
func TestBanOutlivesRetention(t *testing.T) {
	sim := newPluginSim(t, 10000)
	clk := tokentest.NewClock(time.Unix(1_800_000_000, 0))
	sim.add(revocation.Entry{Kind: revocation.KindBan, UserID: "mallory", At: clk.Now().UnixMilli()})
	old := startFeed(t, sim.URL, clk, false)
	clk.Add(2 * time.Hour)
	sim.mu.Lock()
	var kept []revocation.Entry // the plugin's pruning: bans stay
	for _, e := range sim.rows {
		if e.Kind == revocation.KindBan {
			kept = append(kept, e)
		}
	}
	sim.rows = kept
	sim.mu.Unlock()
	fresh := startFeed(t, sim.URL, clk, false)
	iat := clk.Now().Add(-time.Minute)
	testkit.Eventually(t, "old replica fresh", 2*time.Second, func() bool {
		c, _ := old.Check("m", "mallory", iat, time.Time{})
		return c != reason.RevocationUnavailable
	})
	a, _ := old.Check("m", "mallory", iat, time.Time{})
	b, _ := fresh.Check("m", "mallory", iat, time.Time{})
	if a != b {
		t.Errorf("replicas disagree on a permanent ban: old %q, restarted %q", a, b)
	}
}
