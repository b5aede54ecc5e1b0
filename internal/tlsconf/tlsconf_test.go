package tlsconf_test

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/betterauth-extauthz/extauthz/internal/tlsconf"
	"github.com/betterauth-extauthz/extauthz/internal/tlstest"
)

func TestNewRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA("ca")
	a := ca.Server("a", tlstest.SANs{IPs: []string{"127.0.0.1"}})
	b := ca.Server("b", tlstest.SANs{IPs: []string{"127.0.0.1"}})
	aCert, aKey := a.Write(dir, "a")
	_, bKey := b.Write(dir, "b")
	caFile := ca.Write(dir, "ca")
	for name, tc := range map[string]struct {
		cfg  tlsconf.Config
		want string
	}{
		"no key":                  {tlsconf.Config{CertFile: aCert}, "both required"},
		"missing file":            {tlsconf.Config{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: aKey}, "no such file"},
		"key of another cert":     {tlsconf.Config{CertFile: aCert, KeyFile: bKey}, "private key does not match"},
		"SANs without a CA":       {tlsconf.Config{CertFile: aCert, KeyFile: aKey, ClientSANs: []string{"dns:x"}}, "need a client CA"},
		"a SAN without a scheme":  {tlsconf.Config{CertFile: aCert, KeyFile: aKey, ClientCAFile: caFile, ClientSANs: []string{"gateway"}}, "want spiffe://"},
		"a CA file that is a key": {tlsconf.Config{CertFile: aCert, KeyFile: aKey, ClientCAFile: aKey}, "no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tlsconf.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOldProtocolsRefused: TLS 1.2 is the floor, 1.3 is negotiated when offered.
func TestOldProtocolsRefused(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA("ca")
	cert, key := ca.Server("s", tlstest.SANs{IPs: []string{"127.0.0.1"}}).Write(dir, "s")
	s, err := tlsconf.New(tlsconf.Config{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.TLSConfig("h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) { _ = c.(*tls.Conn).Handshake(); c.Close() }(c)
		}
	}()
	dial := func(maxV uint16) (uint16, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), MaxVersion: maxV, MinVersion: tls.VersionTLS10})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().Version, nil
	}
	if _, err := dial(tls.VersionTLS11); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if v, err := dial(0); err != nil || v != tls.VersionTLS13 {
		t.Errorf("default client: version %x, %v; want TLS 1.3", v, err)
	}
	if v, err := dial(tls.VersionTLS12); err != nil || v != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 client: %x, %v", v, err)
	}
}
