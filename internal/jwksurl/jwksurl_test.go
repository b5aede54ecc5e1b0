package jwksurl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/jwkscache"
	"github.com/betterauth-extauthz/extauthz/internal/jwksurl"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

func TestCheckRequiresHTTPS(t *testing.T) {
	cases := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://auth.example.com/api/auth/jwks", false, true},
		{"http://auth.example.com/api/auth/jwks", false, false},
		{"http://auth.example.com/api/auth/jwks", true, true},
		{"http://127.0.0.1:3000/api/auth/jwks", false, true},
		{"http://localhost:3000/api/auth/jwks", false, true},
		{"http://[::1]:3000/api/auth/jwks", false, true},
		{"http://127.0.0.1.evil.com/api/auth/jwks", false, false},
		{"ftp://auth.example.com/jwks", true, false},
		{"/api/auth/jwks", false, false},
	}
	for _, tc := range cases {
		if err := jwksurl.Check(tc.url, tc.insecure); (err == nil) != tc.ok {
			t.Errorf("Check(%q, %v) = %v, want ok=%v", tc.url, tc.insecure, err, tc.ok)
		}
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"https://user:secret@auth.example.com/api/auth/jwks?token=abc#x": "https://auth.example.com/api/auth/jwks",
		"https://auth.example.com/api/auth/jwks":                         "https://auth.example.com/api/auth/jwks",
		"http://[::1]:3000/jwks?":                                        "http://[::1]:3000/jwks",
		"::not a url":                                                    "(unparsable url)",
	}
	for in, want := range cases {
		if got := jwksurl.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	srv := tokentest.NewJWKSServer(t, nil)
	srv.Set(500, nil)
	_, _, err := jwkscache.Fetch(context.Background(), "http://u:secret@"+strings.TrimPrefix(srv.URL, "http://")+"/jwks?key=hunter2", false, time.Second)
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("fetch error leaks credentials: %v", err)
	}
	err = jwksurl.Check("http://u:secret@auth.example.com/jwks?key=hunter2", false)
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("CheckURL error leaks credentials: %v", err)
	}
	_, _, err = jwkscache.Fetch(context.Background(), "http://u:secret@127.0.0.1:1/jwks?key=hunter2", false, time.Second)
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("connection error leaks credentials: %v", err)
	}
}
