package examples_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/syncbuf"
)

// testCA signs listener certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for 127.0.0.1 with the given serial and its
// key as PEM files (each written whole, then renamed into place, as
// certificate tools do).
func (ca *testCA) issue(t *testing.T, certFile, keyFile string, serial int64) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeAtomic(t *testing.T, path string, data []byte) {
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// TestTLSListener serves the listener over TLS from files named in the
// environment: HTTP/2 is negotiated, and a renewed certificate is served
// without a restart, while a broken one leaves the last good one in use.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "flow.yaml"), []byte("name: hello\non: {topic: greetings}\nsteps:\n  - node: log\n    with: {message: hi}\n"), 0o644))
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca := newTestCA(t)
	ca.issue(t, certFile, keyFile, 1001)

	// Half a pair is refused before anything starts.
	cmd := exec.Command(sluiceBin, "run", "--tls-cert", certFile, "flow.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "--tls-cert and --tls-key go together")

	t.Setenv("SLUICE_TLS_CERT", certFile)
	t.Setenv("SLUICE_TLS_KEY", keyFile)
	in := &instance{t: t, dir: dir, addr: freeAddr(t)}
	client := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true, DisableKeepAlives: true,
		}}
	}
	get := func() (*http.Response, error) {
		resp, err := client().Get("https://" + in.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	// The log goes to a file the test reads while the process writes it.
	logFile, err := os.Create(filepath.Join(dir, "sluice.log"))
	require.NoError(t, err)
	defer logFile.Close()
	logText := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	in.log = &syncbuf.Buffer{}
	in.cmd = exec.Command(sluiceBin, "run", "--listen", in.addr, "flow.yaml")
	in.cmd.Dir = dir
	in.cmd.Stdout, in.cmd.Stderr = logFile, logFile
	require.NoError(t, in.cmd.Start())
	t.Cleanup(in.stop)
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = get()
		return err == nil && resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "no HTTPS answer")
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, int64(1001), resp.TLS.PeerCertificates[0].SerialNumber.Int64())
	assert.Contains(t, logText(), "addr=https://"+in.addr)

	// Plain HTTP is not served on the TLS port.
	if r, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + in.addr + "/readyz"); err == nil {
		r.Body.Close()
		assert.Equal(t, http.StatusBadRequest, r.StatusCode)
	}

	// Renewed: the next connections get the new certificate.
	ca.issue(t, certFile, keyFile, 1002)
	require.Eventually(t, func() bool {
		resp, err = get()
		return err == nil && resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 1002
	}, 10*time.Second, 50*time.Millisecond, "the renewed certificate is not served: %v", &err)

	// A broken renewal (not PEM) keeps the last good certificate.
	writeAtomic(t, certFile, []byte("not a certificate"))
	require.Eventually(t, func() bool {
		_, _ = get() // the files are looked at on handshakes
		return strings.Contains(logText(), "cannot load the changed TLS certificate")
	}, 10*time.Second, 50*time.Millisecond, "no warning about the broken certificate")
	resp, err = get()
	require.NoError(t, err)
	assert.Equal(t, int64(1002), resp.TLS.PeerCertificates[0].SerialNumber.Int64())
	// ... until a good one arrives.
	ca.issue(t, certFile, keyFile, 1003)
	require.Eventually(t, func() bool {
		resp, err = get()
		return err == nil && resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 1003
	}, 10*time.Second, 50*time.Millisecond, "the repaired certificate is not served: %v", &err)
}
