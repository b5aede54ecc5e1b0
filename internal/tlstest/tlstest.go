// Package tlstest makes certificate authorities and certificates for tests: a CA,
// server and client certificates with the SANs a test needs, as PEM files.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// Pair is a certificate and its key, PEM encoded.
type Pair struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(name string) *CA {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))
	cert := must(x509.ParseCertificate(der))
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// SANs are a certificate's subject alternative names.
type SANs struct {
	DNS  []string
	IPs  []string
	URIs []string
}

// Server issues a server certificate (and client, so one pair can be both).
func (ca *CA) Server(cn string, sans SANs) Pair {
	return ca.issue(cn, sans, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
}

// Client issues a client certificate.
func (ca *CA) Client(cn string, sans SANs) Pair {
	return ca.issue(cn, sans, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

func (ca *CA) issue(cn string, sans SANs, usage []x509.ExtKeyUsage) Pair {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, DNSNames: sans.DNS,
	}
	for _, ip := range sans.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	for _, u := range sans.URIs {
		tmpl.URIs = append(tmpl.URIs, must(url.Parse(u)))
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key))
	kder := must(x509.MarshalPKCS8PrivateKey(key))
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		Cert:    must(x509.ParseCertificate(der)),
	}
}

// Write writes the pair as dir/name.crt and dir/name.key and returns their paths.
func (p Pair) Write(dir, name string) (certFile, keyFile string) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	mustDo(os.WriteFile(certFile, p.CertPEM, 0o600))
	mustDo(os.WriteFile(keyFile, p.KeyPEM, 0o600))
	return certFile, keyFile
}

// Write writes the CA certificate as dir/name.crt and returns its path.
func (ca *CA) Write(dir, name string) string {
	f := filepath.Join(dir, name+".crt")
	mustDo(os.WriteFile(f, ca.CertPEM, 0o600))
	return f
}

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func serial() *big.Int {
	return must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)))
}

func must[T any](v T, err error) T {
	mustDo(err)
	return v
}

func mustDo(err error) {
	if err != nil {
		panic("tlstest: " + err.Error())
	}
}

// SwapInto writes files into dir the way kubelet updates a mounted Secret: into a
// new hidden folder, then one atomic rename of the `..data` symlink, with each
// file a symlink through `..data`.
func SwapInto(dir string, files map[string][]byte) {
	ts := filepath.Join(dir, ".."+time.Now().Format("2006_01_02_15_04_05.000000000"))
	mustDo(os.MkdirAll(ts, 0o755))
	for name, b := range files {
		mustDo(os.WriteFile(filepath.Join(ts, name), b, 0o600))
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	mustDo(os.Symlink(filepath.Base(ts), tmp))
	mustDo(os.Rename(tmp, filepath.Join(dir, "..data")))
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err != nil {
			mustDo(os.Symlink(filepath.Join("..data", name), link))
		}
	}
}
