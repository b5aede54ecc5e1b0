// Package reason defines the closed set of codes that explain every deny.
//
// A code travels to logs, metrics and the CLI; it never reaches the client, whose
// deny body stays generic so that a probe learns nothing about our keys or policy.
package reason

import (
	"fmt"
	"unicode/utf8"
)

// Code names why a request was denied. The empty Code means "allowed".
type Code string

// Token and key codes: the request gets 401.
const (
	TokenMissing     Code = "token_missing"
	TokenMalformed   Code = "token_malformed"
	TokenTooLarge    Code = "token_too_large"
	AlgNotAllowed    Code = "alg_not_allowed"
	UnknownKID       Code = "unknown_kid"
	SignatureInvalid Code = "signature_invalid"
	TokenExpired     Code = "token_expired"
	TokenNotYetValid Code = "token_not_yet_valid"
	IssuerMismatch   Code = "issuer_mismatch"
	AudienceMismatch Code = "audience_mismatch"
	JWKSUnavailable  Code = "jwks_unavailable"
	// UserBanned: the token says its user is banned (Better Auth's admin plugin:
	// banned, with banExpires absent or ahead), or the revocation feed says so.
	UserBanned Code = "user_banned"
	// SessionRevoked: the token's session (sid) was signed out or revoked, or all
	// of its user's sessions were, after the token was issued.
	SessionRevoked Code = "session_revoked"
	// RevocationUnavailable: the issuer's revocation feed has not answered for
	// longer than its maxStale, so revocations cannot be ruled out.
	RevocationUnavailable Code = "revocation_unavailable"
	// TokenTooOld: the rule's maxTokenAge is shorter than now - iat.
	TokenTooOld Code = "token_too_old"
	// SessionUnavailable: a credential checked online (get-session) could not be
	// checked: Better Auth unreachable, slow, or answering an error.
	SessionUnavailable Code = "session_unavailable"
	// CredentialNotAccepted: a valid credential of a kind its issuer does not
	// accept (a JWT where only session cookies are, or the other way round).
	CredentialNotAccepted Code = "credential_not_accepted"
)

// Policy codes: the token (if any) was fine but the request is not allowed.
const (
	ClaimMissing   Code = "claim_missing"
	OwnerMismatch  Code = "owner_mismatch"
	ConditionFalse Code = "condition_false"
	NoRule         Code = "no_rule"
	// EmailUnverified: the rule wants emailVerified: true.
	EmailUnverified Code = "email_unverified"
	// AnonymousDenied: the rule refuses Better Auth's anonymous users (isAnonymous).
	AnonymousDenied Code = "anonymous_denied"
	// NotMember: the org rule's organization is not in the token's orgs claim, or
	// not with a role the rule wants.
	NotMember Code = "not_member"
	// CSRFOriginMismatch: a cookie-authenticated unsafe request (not GET, HEAD or
	// OPTIONS) whose Origin (or Referer) is not one of the issuer's trustedOrigins.
	CSRFOriginMismatch Code = "csrf_origin_mismatch"
	// NotReady is used while no valid policy is loaded: the service fails closed.
	NotReady Code = "not_ready"
	// InternalError is a request that made extauthz panic; it is denied, counted in
	// extauthz_panics_total, and the process keeps serving.
	InternalError Code = "internal_error"
)

// Request codes: the request itself is malformed or ambiguous (HTTP 400).
const (
	PathRejected   Code = "path_rejected"
	HostRejected   Code = "host_rejected"
	MethodRejected Code = "method_rejected"
	// HeaderRejected is a header the backend might read as an identity header that
	// the proxy in front cannot remove (an underscore variant through nginx/Traefik).
	HeaderRejected Code = "header_rejected"
)

// All lists every code, for tests and for pre-creating metric series.
var All = []Code{
	TokenMissing, TokenMalformed, TokenTooLarge, AlgNotAllowed, UnknownKID, SignatureInvalid,
	TokenExpired, TokenNotYetValid, IssuerMismatch, AudienceMismatch, JWKSUnavailable,
	UserBanned, SessionRevoked, RevocationUnavailable, TokenTooOld, CredentialNotAccepted, SessionUnavailable,
	ClaimMissing, OwnerMismatch, ConditionFalse, NoRule, EmailUnverified, AnonymousDenied, NotMember, CSRFOriginMismatch,
	NotReady, InternalError,
	PathRejected, HostRejected, MethodRejected, HeaderRejected,
}

// Unauthenticated reports whether the code means "no acceptable credentials" (HTTP 401)
// rather than "authenticated but not allowed" (403) or "bad request" (400).
func (c Code) Unauthenticated() bool {
	switch c {
	case TokenMissing, TokenMalformed, TokenTooLarge, AlgNotAllowed, UnknownKID, SignatureInvalid,
		TokenExpired, TokenNotYetValid, IssuerMismatch, AudienceMismatch, JWKSUnavailable,
		UserBanned, SessionRevoked, RevocationUnavailable, TokenTooOld, CredentialNotAccepted, SessionUnavailable:
		return true
	}
	return false
}

// BadRequest reports whether the code means the request was malformed (HTTP 400).
func (c Code) BadRequest() bool {
	switch c {
	case PathRejected, HostRejected, MethodRejected, HeaderRejected:
		return true
	}
	return false
}

// Clip bounds a request-derived string for a log line or detail: at most n bytes,
// cut at a rune boundary, with "…" when cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Error carries a Code together with a human-readable detail for logs and the CLI.
// The detail may name claims, kids or URLs; it must never contain a token.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

// Error formats the code, the detail and the cause.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Detail)
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Message is the detail and cause without the code, for logs that carry the code
// in a field of its own.
func (e *Error) Message() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

// Errorf builds an *Error with a formatted detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error around a cause.
func Wrap(code Code, detail string, err error) *Error {
	return &Error{Code: code, Detail: detail, Err: err}
}
