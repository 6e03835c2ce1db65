package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"
)

// listenerLimits bound what clients of the `sluice run` listener can hold:
// a slow body, an idle keep-alive connection, a connection at all.
type listenerLimits struct {
	readHeader, read, write, idle time.Duration
	maxConns                      int
}

func (l *listenerLimits) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.DurationVar(&l.readHeader, "read-header-timeout", 5*time.Second, "listener: time a client has to send a request's headers")
	f.DurationVar(&l.read, "read-timeout", 60*time.Second, "listener: time a client has to send a whole request, body included (a slow upload past it gets its connection closed)")
	f.DurationVar(&l.write, "write-timeout", 0, "listener: time to answer a request, from the end of its headers; 0: the longest sync flow's timeout (or auto wait) plus 10s")
	f.DurationVar(&l.idle, "idle-timeout", 60*time.Second, "listener: how long an idle keep-alive connection is kept")
	f.IntVar(&l.maxConns, "max-connections", 1024, "listener: connections served at once; more wait to be accepted")
}

// server makes the listener's server with the limits. write is the
// derived write timeout when the flag left it at 0.
func (l listenerLimits) server(h http.Handler, write time.Duration) *http.Server {
	if l.write > 0 {
		write = l.write
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: l.readHeader, ReadTimeout: l.read, WriteTimeout: write,
		IdleTimeout: l.idle, MaxHeaderBytes: 64 << 10}
}

// listen opens addr with the connection limit.
func (l listenerLimits) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if l.maxConns > 0 {
		ln = netutil.LimitListener(ln, l.maxConns)
	}
	return ln, nil
}

// loopbackOnly reports whether a listener on addr is reachable from this
// machine only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkWebhookToken refuses a bucket notification endpoint that anyone
// could post to: on a listener reachable from elsewhere the token is
// required; on loopback its absence is only warned about.
func checkWebhookToken(addr string, log *slog.Logger) error {
	if os.Getenv("SLUICE_WEBHOOK_TOKEN") != "" {
		return nil
	}
	if !loopbackOnly(addr) {
		return fmt.Errorf("--listen %s is reachable from other machines and serves /hooks/s3: set SLUICE_WEBHOOK_TOKEN (MinIO sends it as its webhook auth_token), or listen on 127.0.0.1", addr)
	}
	log.Warn("/hooks/s3 accepts notifications without a token (SLUICE_WEBHOOK_TOKEN is unset); fine on loopback only")
	return nil
}

// shutdown stops the server: in-flight requests get grace to finish, then
// every connection still open (a slow client) is closed.
func shutdown(srv *http.Server, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		_ = srv.Close()
	}
}
