// Package tlsconf serves the listeners' TLS: a certificate and key, optionally a
// client CA (mTLS) with an allow-list of client SANs, all re-read when the files
// change. New handshakes use the newest good files; established connections keep
// theirs. A new set that does not load is refused and the old one kept.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Config names the files. CertFile and KeyFile are required.
type Config struct {
	// CertFile is a PEM certificate chain, leaf first; KeyFile its private key.
	CertFile, KeyFile string
	// ClientCAFile, when set, requires every client to present a certificate
	// signed by one of its PEM certificates.
	ClientCAFile string
	// ClientSANs, when set (with ClientCAFile), admits only client certificates
	// with one of these SANs: "spiffe://…" (or any URI) for a URI SAN, "dns:name"
	// for a DNS SAN.
	ClientSANs []string
	// Poll is how often the files are checked for a change (kubelet swaps a
	// mounted Secret's files through a symlink, which stat sees); 1s when zero.
	Poll time.Duration
	// Log defaults to slog.Default().
	Log *slog.Logger
	// OnReload, when set, is told each reload's outcome (for metrics) and the
	// leaf certificate's expiry.
	OnReload func(err error, notAfter time.Time)
}

// Server holds the current TLS material of one or more listeners.
type Server struct {
	cfg     Config
	current atomic.Pointer[tls.Config]
	stamp   string
	sans    []san
}

type san struct {
	uri string // a URI SAN, or
	dns string // a DNS SAN
}

// ErrSANNotAllowed is the handshake error for a client certificate whose SANs are
// not on the allow-list.
var ErrSANNotAllowed = errors.New("tls: client certificate SAN not allowed")

// New loads the files once; an error means the listeners cannot start.
func New(cfg Config) (*Server, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are both required")
	}
	if len(cfg.ClientSANs) > 0 && cfg.ClientCAFile == "" {
		return nil, errors.New("tls: client SANs need a client CA file")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{cfg: cfg}
	for _, raw := range cfg.ClientSANs {
		v, err := parseSAN(raw)
		if err != nil {
			return nil, err
		}
		s.sans = append(s.sans, v)
	}
	stamp, err := s.fileStamp()
	if err != nil {
		return nil, err
	}
	c, notAfter, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(c)
	s.stamp = stamp
	if cfg.OnReload != nil {
		cfg.OnReload(nil, notAfter)
	}
	return s, nil
}

func parseSAN(raw string) (san, error) {
	if name, ok := strings.CutPrefix(raw, "dns:"); ok {
		if name == "" {
			return san{}, fmt.Errorf("tls: client SAN %q: empty DNS name", raw)
		}
		return san{dns: strings.ToLower(name)}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return san{}, fmt.Errorf("tls: client SAN %q: want spiffe://… (a URI) or dns:name", raw)
	}
	return san{uri: raw}, nil
}

// TLSConfig is a check listener's configuration: each handshake takes the
// current files' settings, client certificate checks included.
func (s *Server) TLSConfig(nextProtos ...string) *tls.Config {
	return s.config(true, nextProtos)
}

// ServerOnlyTLSConfig is TLSConfig without client certificates, for the admin
// listener: kubelet's probes and Prometheus present none.
func (s *Server) ServerOnlyTLSConfig(nextProtos ...string) *tls.Config {
	return s.config(false, nextProtos)
}

func (s *Server) config(clientAuth bool, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.current.Load().Clone()
			c.NextProtos = nextProtos
			if !clientAuth {
				c.ClientAuth, c.ClientCAs, c.VerifyConnection = tls.NoClientCert, nil, nil
			}
			return c, nil
		},
	}
}

// load reads the files into a tls.Config.
func (s *Server) load() (*tls.Config, time.Time, error) {
	pair, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("tls: certificate and key: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, time.Time{}, fmt.Errorf("tls: certificate: %w", err)
		}
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if s.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(s.cfg.ClientCAFile)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, time.Time{}, fmt.Errorf("tls: client CA %s holds no PEM certificate", s.cfg.ClientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
		if len(s.sans) > 0 {
			c.VerifyConnection = s.verifySAN
		}
	}
	return c, leaf.NotAfter, nil
}

func (s *Server) verifySAN(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrSANNotAllowed
	}
	leaf := cs.PeerCertificates[0]
	for _, want := range s.sans {
		if want.uri != "" && slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == want.uri }) {
			return nil
		}
		if want.dns != "" && slices.ContainsFunc(leaf.DNSNames, func(d string) bool { return strings.EqualFold(d, want.dns) }) {
			return nil
		}
	}
	return ErrSANNotAllowed
}

// fileStamp identifies the files' current contents by inode, size and mtime
// (stat follows kubelet's ..data symlink to the new files).
func (s *Server) fileStamp() (string, error) {
	var b strings.Builder
	for _, f := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		ino := uint64(0)
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%d:%d:%d;", ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// Run re-reads the files when they change, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := s.fileStamp()
		if err != nil || stamp == s.stamp {
			continue // a file missing mid-swap: try again next tick
		}
		c, notAfter, err := s.load()
		if err != nil {
			// A half-written pair (cert new, key old) fails too; the stamp covers
			// every file, so the rest of the write is another change, tried then.
			s.cfg.Log.Warn("tls files changed but do not load; keeping the previous certificate", "err", err)
			if s.cfg.OnReload != nil {
				s.cfg.OnReload(err, time.Time{})
			}
			s.stamp = stamp
			continue
		}
		s.current.Store(c)
		s.stamp = stamp
		s.cfg.Log.Info("tls certificate reloaded", "not_after", notAfter.UTC().Format(time.RFC3339))
		if s.cfg.OnReload != nil {
			s.cfg.OnReload(nil, notAfter)
		}
	}
}

// Reason classifies a failed server handshake for a metric label: no_client_cert,
// bad_client_cert, san_not_allowed, or other (a plaintext client, a bad hello).
func Reason(err error) string {
	var verr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, ErrSANNotAllowed):
		return "san_not_allowed"
	case errors.As(err, &verr):
		return "bad_client_cert"
	case err != nil && strings.Contains(err.Error(), "client didn't provide a certificate"):
		return "no_client_cert"
	case err != nil && strings.Contains(err.Error(), ErrSANNotAllowed.Error()):
		return "san_not_allowed"
	case err != nil && (strings.Contains(err.Error(), "certificate signed by unknown authority") || strings.Contains(err.Error(), "failed to verify certificate")):
		return "bad_client_cert"
	}
	return "other"
}
