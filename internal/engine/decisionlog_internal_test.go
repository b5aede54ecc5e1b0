package engine

import (
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

func TestDenyLimiter(t *testing.T) {
	l := denyLimiter{perSecond: 3}
	t0 := time.Unix(1000, 0)
	var written int
	for i := range 10 {
		if ok, sup := l.allow(reason.TokenExpired, t0.Add(time.Duration(i)*time.Millisecond)); ok {
			written++
		} else if sup != 0 {
			t.Fatalf("suppressed reported mid-window: %d", sup)
		}
	}
	if written != 3 {
		t.Fatalf("wrote %d lines in one second, want 3", written)
	}
	// Another reason has its own window.
	if ok, _ := l.allow(reason.UnknownKID, t0); !ok {
		t.Fatal("a second reason was limited by the first")
	}
	// The next second reports the 7 suppressed once.
	ok, sup := l.allow(reason.TokenExpired, t0.Add(time.Second))
	if !ok || sup != 7 {
		t.Fatalf("next second: ok %v suppressed %d, want true 7", ok, sup)
	}
	if _, sup := l.allow(reason.TokenExpired, t0.Add(time.Second)); sup != 0 {
		t.Fatalf("suppressed reported twice: %d", sup)
	}
	if ok, _ := (&denyLimiter{perSecond: -1}).allow(reason.TokenExpired, t0); !ok {
		t.Fatal("no cap still limited")
	}
}
