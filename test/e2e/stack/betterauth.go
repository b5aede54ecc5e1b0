package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// BetterAuthOptions configure one Better Auth server (see test/e2e/betterauth/server.mjs).
type BetterAuthOptions struct {
	// Alg is the jwt plugin's keyPairConfig.alg (default EdDSA).
	Alg string
	// RotationInterval and GracePeriod in seconds; 0 leaves rotation off.
	RotationInterval, GracePeriod int
	// Expiration is the token lifetime, e.g. "15m" or "2s".
	Expiration string
	// Audience overrides the aud claim (default: the origin).
	Audience string
	// Sessions adds the bearer plugin and the signed session cookie cache.
	Sessions bool
	// BaseURL is Better Auth's baseURL when it is served through a proxy (its
	// origin is then the issuer); the server's own URL when empty.
	BaseURL string
}

// BetterAuth is a running Better Auth server.
type BetterAuth struct {
	URL  string
	Proc *Proc
	// FeedSecretFile holds the secret of the extauthz plugin's revocation feed
	// (the PostgreSQL example only).
	FeedSecretFile string
}

// StartBetterAuth starts a Better Auth server on a free loopback port.
func StartBetterAuth(t Tools, dir, name string, o BetterAuthOptions) (*BetterAuth, error) {
	port := FreePort()
	env := []string{fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1"}
	if o.Alg != "" {
		env = append(env, "JWT_ALG="+o.Alg)
	}
	if o.RotationInterval > 0 {
		env = append(env, fmt.Sprintf("ROTATION_INTERVAL=%d", o.RotationInterval), fmt.Sprintf("GRACE_PERIOD=%d", o.GracePeriod))
	}
	if o.Expiration != "" {
		env = append(env, "EXPIRATION="+o.Expiration)
	}
	if o.Audience != "" {
		env = append(env, "AUDIENCE="+o.Audience)
	}
	if o.Sessions {
		env = append(env, "SESSIONS=1")
	}
	if o.BaseURL != "" {
		env = append(env, "BASE_URL="+o.BaseURL)
	}
	p, err := Start(dir, name, env, t.Node, filepath.Join(t.BetterAuthDir, "server.mjs"))
	if err != nil {
		return nil, err
	}
	b := &BetterAuth{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Proc: p}
	if err := WaitHTTP(p, b.URL+"/healthz", 200, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return b, nil
}

// User is a signed-up Better Auth user with a session.
type User struct {
	ID, UUID, Email string
	// BearerToken is the bearer plugin's set-auth-token from sign-up, if any.
	BearerToken string
	base        string
	client      *http.Client
}

const password = "correct-horse-battery"

var userSeq atomic.Int64

// SignUp creates a user with email and password and keeps its session cookie.
func (b *BetterAuth) SignUp(name string) (*User, error) {
	return SignUp(b.URL, name)
}

// SignUp creates a user on the Better Auth at base and keeps its session cookie.
func SignUp(base, name string) (*User, error) {
	jar, _ := cookiejar.New(nil)
	u := &User{base: base, client: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
	email := fmt.Sprintf("%s-%d-%d@example.test", strings.ToLower(name), time.Now().UnixNano(), userSeq.Add(1))
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "name": name})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/auth/sign-up/email", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	// Better Auth refuses cookie-carrying POSTs without an Origin it trusts.
	req.Header.Set("Origin", base)
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("sign-up: %d %s", resp.StatusCode, b)
	}
	var out struct {
		User struct {
			ID    string `json:"id"`
			UUID  string `json:"uuid"`
			Email string `json:"email"`
		} `json:"user"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("sign-up answer: %w: %s", err, b)
	}
	u.ID, u.UUID, u.Email = out.User.ID, out.User.UUID, out.User.Email
	u.BearerToken = resp.Header.Get("set-auth-token")
	if u.UUID == "" {
		return nil, fmt.Errorf("sign-up answer has no uuid: %s", b)
	}
	return u, nil
}

// Token fetches a fresh JWT from GET /api/auth/token with the session cookie.
func (u *User) Token() (string, error) {
	resp, err := u.client.Get(u.base + "/api/auth/token")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("/api/auth/token: %d %s", resp.StatusCode, b)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("/api/auth/token answer %q: %v", b, err)
	}
	return out.Token, nil
}

// SignIn opens another session for the same user (a second browser) and returns
// it as a User of its own.
func (u *User) SignIn() (*User, error) {
	jar, _ := cookiejar.New(nil)
	n := &User{ID: u.ID, UUID: u.UUID, Email: u.Email, base: u.base, client: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
	if _, err := n.Post("/api/auth/sign-in/email", map[string]any{"email": u.Email, "password": password}); err != nil {
		return nil, err
	}
	return n, nil
}

// Post sends a JSON POST to Better Auth with this user's session, as the browser
// app would (with its Origin), and returns the answer's body.
func (u *User) Post(path string, payload any) ([]byte, error) {
	body, _ := json.Marshal(payload)
	req, _ := http.NewRequest(http.MethodPost, u.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", u.base)
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return b, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return b, nil
}

// Cookies are the session cookies Better Auth set for this user, as a Cookie header
// value (after a get-session, so that the cookie cache is there too).
func (u *User) Cookies() (string, error) {
	resp, err := u.client.Get(u.base + "/api/auth/get-session")
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	base, _ := url.Parse(u.base)
	var parts []string
	for _, c := range u.client.Jar.Cookies(base) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; "), nil
}
