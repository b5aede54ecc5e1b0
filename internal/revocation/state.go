// Package revocation keeps, per issuer, what Better Auth has revoked since its
// tokens were issued: signed-out or revoked sessions, users whose every session
// was revoked, banned users. A Feed polls the extauthz plugin's revocation feed
// in Better Auth; a State is the immutable view one check reads, with no lock and
// no network call.
package revocation

import (
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/reason"
)

// Entry kinds, as the feed writes them.
const (
	KindSession = "session" // one session ended (sign-out, revoke-session)
	// KindUser: every session of a user that was issued before At ended. The
	// shipped plugin publishes one session entry per session instead; the kind is
	// for other publishers of the feed.
	KindUser  = "user"
	KindBan   = "ban"   // a user was banned, until Until (0: no end)
	KindUnban = "unban" // a user's ban was lifted
)

// Entry is one revocation. Times are Unix milliseconds, as Better Auth's clock
// gives them.
type Entry struct {
	Kind      string `json:"kind"`
	SessionID string `json:"sessionId,omitempty"`
	UserID    string `json:"userId,omitempty"`
	At        int64  `json:"at"`
	Until     int64  `json:"until,omitempty"`
}

// State is an immutable view of the revocations of one issuer.
type State struct {
	sessions map[string]int64 // session id -> when it ended
	users    map[string]int64 // user id -> when all their sessions ended
	bans     map[string]int64 // user id -> ban end (0: none)
	entries  int
}

// NewState applies entries, in order, to an empty state.
func NewState(entries []Entry) *State {
	return (&State{}).With(entries, 0)
}

// With returns a new State: s with entries applied in order, and without session
// and user entries older than dropBefore (Unix ms; 0 keeps all), which no token
// still alive can predate, nor bans that ended before it. s is not changed.
func (s *State) With(entries []Entry, dropBefore int64) *State {
	n := &State{sessions: make(map[string]int64, len(s.sessions)), users: make(map[string]int64, len(s.users)), bans: make(map[string]int64, len(s.bans))}
	for k, v := range s.sessions {
		if v >= dropBefore {
			n.sessions[k] = v
		}
	}
	for k, v := range s.users {
		if v >= dropBefore {
			n.users[k] = v
		}
	}
	for k, v := range s.bans {
		if v == 0 || v >= dropBefore {
			n.bans[k] = v
		}
	}
	for _, e := range entries {
		if e.Kind != KindBan && e.Kind != KindUnban && e.At < dropBefore {
			continue // a replayed entry older than any live token
		}
		switch e.Kind {
		case KindSession:
			if e.SessionID != "" {
				n.sessions[e.SessionID] = max(n.sessions[e.SessionID], e.At)
			}
		case KindUser:
			if e.UserID != "" {
				n.users[e.UserID] = max(n.users[e.UserID], e.At)
			}
		case KindBan:
			if e.UserID != "" {
				n.bans[e.UserID] = e.Until
			}
		case KindUnban:
			delete(n.bans, e.UserID)
		}
	}
	n.entries = len(n.sessions) + len(n.users) + len(n.bans)
	return n
}

// Len is the number of sessions, users and bans the state holds.
func (s *State) Len() int { return s.entries }

// Check says whether a token of user, for session sid (may be empty), issued at
// iat, has been revoked as of now.
func (s *State) Check(sid, user string, iat, now time.Time) (reason.Code, string) {
	if until, banned := s.bans[user]; banned && user != "" && (until == 0 || now.UnixMilli() < until) {
		return reason.UserBanned, "the revocation feed says the user is banned"
	}
	// iat has whole seconds: a token issued in the same second as the revocation
	// counts as before it (a second of false denies rather than a window).
	if at, ok := s.users[user]; ok && user != "" && iat.UnixMilli() <= at {
		return reason.SessionRevoked, "every session of the user was revoked after the token was issued"
	}
	if sid != "" {
		if _, ok := s.sessions[sid]; ok {
			return reason.SessionRevoked, "the token's session was signed out or revoked"
		}
	}
	return "", ""
}
