package decisions

import (
	"fmt"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
	"github.com/betterauth-extauthz/extauthz/internal/revocation"
)

// revokedChecker answers as a feed in the table's state would.
type revokedChecker struct {
	state *revocation.State
	stale bool
	now   time.Time
}

func (c revokedChecker) Check(sid, user string, iat, _ time.Time) (reason.Code, string) {
	if c.stale {
		return reason.RevocationUnavailable, "the table's revocation feed is stale"
	}
	return c.state.Check(sid, user, iat, c.now)
}

func (r Revoked) checker(now time.Time) (revokedChecker, error) {
	rel := func(what, d string) (int64, error) {
		v, err := time.ParseDuration(d)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a duration from now", what, d)
		}
		return now.Add(v).UnixMilli(), nil
	}
	var entries []revocation.Entry
	for _, sid := range r.Sessions {
		entries = append(entries, revocation.Entry{Kind: revocation.KindSession, SessionID: sid, At: now.UnixMilli()})
	}
	for user, at := range r.Users {
		ms, err := rel("users."+user, at)
		if err != nil {
			return revokedChecker{}, err
		}
		entries = append(entries, revocation.Entry{Kind: revocation.KindUser, UserID: user, At: ms})
	}
	for user, until := range r.Bans {
		e := revocation.Entry{Kind: revocation.KindBan, UserID: user, At: now.UnixMilli()}
		if until != "" {
			ms, err := rel("bans."+user, until)
			if err != nil {
				return revokedChecker{}, err
			}
			e.Until = ms
		}
		entries = append(entries, e)
	}
	return revokedChecker{state: revocation.NewState(entries), stale: r.Stale, now: now}, nil
}
