package sessioncookie_test

import (
	"errors"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/sessioncookie"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		prefix  string
		secure  bool
		want    sessioncookie.Cookies
		err     error
	}{
		{"none", []string{"theme=dark; lang=en"}, "", false, sessioncookie.Cookies{}, nil},
		{"token and data", []string{"better-auth.session_token=abc.c2lnbmF0dXJl; better-auth.session_data=h.p.s"}, "", false, sessioncookie.Cookies{Token: "abc", Data: "h.p.s", TokenName: "better-auth.session_token", TokenValue: "abc.c2lnbmF0dXJl"}, nil},
		{"URL-encoded signature", []string{"better-auth.session_token=abc.c2ln%2Bb%3D%3D"}, "", false, sessioncookie.Cookies{Token: "abc", TokenName: "better-auth.session_token", TokenValue: "abc.c2ln%2Bb%3D%3D"}, nil},
		{"__Secure- on https", []string{"__Secure-better-auth.session_token=abc.sig; __Secure-better-auth.session_data=h.p.s"}, "", true, sessioncookie.Cookies{Token: "abc", Data: "h.p.s", TokenName: "__Secure-better-auth.session_token", TokenValue: "abc.sig"}, nil},
		{"chunks, out of order, two headers", []string{"better-auth.session_data.1=p.s; better-auth.session_token=abc.sig", "better-auth.session_data.0=h."}, "", false, sessioncookie.Cookies{Token: "abc", Data: "h.p.s", TokenName: "better-auth.session_token", TokenValue: "abc.sig"}, nil},
		{"custom prefix", []string{"myapp.session_token=abc.sig; better-auth.session_token=zzz.sig"}, "myapp", false, sessioncookie.Cookies{Token: "abc", TokenName: "myapp.session_token", TokenValue: "abc.sig"}, nil},
		{"name twice", []string{"better-auth.session_token=abc.sig", "better-auth.session_token=evil.sig"}, "", false, sessioncookie.Cookies{}, sessioncookie.ErrAmbiguous},
		{"https: a plain cookie beside __Secure- is ignored (cookie tossing)", []string{"better-auth.session_token=tossed.s; __Secure-better-auth.session_token=b.s"}, "", true, sessioncookie.Cookies{Token: "b", TokenName: "__Secure-better-auth.session_token", TokenValue: "b.s"}, nil},
		{"http: __Secure- is not read", []string{"__Secure-better-auth.session_token=b.s"}, "", false, sessioncookie.Cookies{}, nil},
		{"whole and chunked", []string{"better-auth.session_data=x; better-auth.session_data.0=y"}, "", false, sessioncookie.Cookies{}, sessioncookie.ErrAmbiguous},
		{"a chunk missing", []string{"better-auth.session_data.0=x; better-auth.session_data.2=y"}, "", false, sessioncookie.Cookies{}, sessioncookie.ErrAmbiguous},
		{"not our chunk suffix", []string{"better-auth.session_data.x=y; better-auth.session_data.99=z"}, "", false, sessioncookie.Cookies{}, nil},
	}
	for _, tc := range cases {
		got, err := sessioncookie.Parse(tc.headers, tc.prefix, tc.secure)
		if !errors.Is(err, tc.err) || (tc.err == nil && got != tc.want) {
			t.Errorf("%s: %+v, %v; want %+v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}
