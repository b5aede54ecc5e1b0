package server

import (
	"bytes"
	"errors"
	"log"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"

	"github.com/betterauth-extauthz/extauthz/internal/metrics"
	"github.com/betterauth-extauthz/extauthz/internal/tlsconf"
)

// countingCreds counts the gRPC listener's refused handshakes: grpc-go only logs
// them.
type countingCreds struct {
	credentials.TransportCredentials
	metrics *metrics.Recorder
	log     *slog.Logger
}

func (c countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		reason := tlsconf.Reason(err)
		c.metrics.TLSHandshakeFailed("grpc", reason)
		c.log.Debug("tls handshake refused", "listener", "grpc", "reason", reason, "remote", conn.RemoteAddr().String())
	}
	return nc, info, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{TransportCredentials: c.TransportCredentials.Clone(), metrics: c.metrics, log: c.log}
}

// handshakeLog is an http.Server's ErrorLog: net/http reports a refused TLS
// handshake only as a log line, so this counts those lines and passes the rest
// on to slog.
func handshakeLog(listener string, m *metrics.Recorder, l *slog.Logger) *log.Logger {
	return log.New(logWriter(func(line string) {
		if rest, ok := strings.CutPrefix(line, "http: TLS handshake error from "); ok {
			reason := tlsconf.Reason(errors.New(rest))
			m.TLSHandshakeFailed(listener, reason)
			l.Debug("tls handshake refused", "listener", listener, "reason", reason)
			return
		}
		l.Warn("http server", "listener", listener, "msg", line)
	}), "", 0)
}

type logWriter func(string)

func (w logWriter) Write(p []byte) (int, error) {
	w(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
