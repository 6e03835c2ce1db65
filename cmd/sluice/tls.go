package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves a certificate and key read from files, reading them
// again when either file's modification time or size changes, so renewed
// certificates (certbot, cert-manager) are served without a restart. A
// pair that fails to load (a renewal caught halfway: new certificate, old
// key) leaves the previous pair in use, with a warning, and is tried again
// on the next handshake. It is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp // of the files the served pair was read from
	tried   [2]fileStamp // of the files last tried and failed
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// reloadCheck bounds how often the files are looked at: a busy listener
// does not stat them on every handshake.
const reloadCheck = 250 * time.Millisecond

// newCertReloader loads the pair once, so bad files fail at start.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together: give both (or SLUICE_TLS_CERT and SLUICE_TLS_KEY)")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamps, err := r.stamps()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamps); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			flag := "--tls-cert"
			if i == 1 {
				flag = "--tls-key"
			}
			return s, fmt.Errorf("%s %s: %w", flag, f, err)
		}
		s[i] = fileStamp{st.ModTime(), st.Size()}
	}
	return s, nil
}

func (r *certReloader) load(stamps [2]fileStamp) error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &c, stamps
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reloadCheck {
		r.checked = now
		stamps, err := r.stamps()
		switch {
		case err != nil:
			if stamps != r.tried {
				r.log.Warn("cannot read the TLS certificate files; serving the one loaded before", "error", err)
				r.tried = stamps
			}
		case stamps != r.stamp && stamps != r.tried:
			if err := r.load(stamps); err != nil {
				r.log.Warn("cannot load the changed TLS certificate; serving the one loaded before", "error", err)
				r.tried = stamps
			} else {
				r.log.Info("TLS certificate reloaded", "cert", r.certFile)
			}
		}
	}
	return r.cert, nil
}

// tlsConfig is the listener's TLS configuration; http.Server adds HTTP/2
// ("h2") to it when serving.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
