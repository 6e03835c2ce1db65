// Package miniotest starts a real MinIO server for tests.
//
// The server binary is SLUICE_MINIO_BIN, else .cache/bin/minio under the
// module root (scripts/test.sh builds it there with go install), else minio
// on PATH. Without one the test is skipped, except under CI=true, where a
// missing server is a failure.
package miniotest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Server is a running MinIO.
type Server struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	DataDir   string

	t      testing.TB
	bin    string
	env    []string
	cmd    *exec.Cmd
	exited chan error
	out    *strings.Builder
}

// URL is the storage URL of the server.
func (s *Server) URL() string {
	return fmt.Sprintf("s3://%s:%s@%s?secure=false&path_style=true&region=us-east-1", s.AccessKey, s.SecretKey, s.Endpoint)
}

// Binary finds the MinIO server binary, or returns "".
func Binary() string {
	if b := os.Getenv("SLUICE_MINIO_BIN"); b != "" {
		return b
	}
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if b := filepath.Join(d, ".cache", "bin", "minio"); fileExists(b) {
				return b
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if b, err := exec.LookPath("minio"); err == nil {
		return b
	}
	return ""
}

func fileExists(p string) bool { st, err := os.Stat(p); return err == nil && !st.IsDir() }

// Start starts MinIO on a free loopback port with its own data folder and
// extra environment (notification targets, for example); it is stopped
// when the test ends. It returns once /minio/health/cluster answers 200:
// /live answers before notification rules are loaded.
func Start(t testing.TB, env ...string) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("MinIO server not found: run scripts/test.sh (it builds .cache/bin/minio) or set SLUICE_MINIO_BIN")
		}
		t.Skip("MinIO server not found (scripts/test.sh builds it; or set SLUICE_MINIO_BIN)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	s := &Server{Endpoint: addr, AccessKey: "sluice-test", SecretKey: "sluice-test-secret", DataDir: t.TempDir(),
		t: t, bin: bin, env: env}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// Stop kills the server (SIGKILL, as a crash would); its data stays for
// Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts a stopped server again on the same address and data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) start() {
	t := s.t
	t.Helper()
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.Endpoint, s.DataDir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Env = append(cmd.Env, s.env...)
	s.out = &strings.Builder{}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	require.NoError(t, cmd.Start())
	s.cmd, s.exited = cmd, make(chan error, 1)
	go func() { s.exited <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Endpoint+"/minio/health/cluster", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.exited:
			s.cmd = nil
			t.Fatalf("minio exited: %v\n%s", err, s.out.String())
		case <-ctx.Done():
			t.Fatalf("minio not healthy within 60s:\n%s", s.out.String())
		case <-time.After(50 * time.Millisecond): // poll interval of a readiness probe
		}
	}
}

// Hook is a loopback HTTP server standing in for Sluice's /hooks/s3: it
// forwards MinIO's webhook posts to the handler set last (a driver's
// receiver), and answers 503 while there is none.
type Hook struct {
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
}

// NewHook starts a hook server, closed when the test ends.
func NewHook(t testing.TB) *Hook {
	h := &Hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := h.handler.Load(); p != nil {
			(*p).ServeHTTP(w, r)
			return
		}
		http.Error(w, "no receiver yet", http.StatusServiceUnavailable)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// Set routes posts to handler.
func (h *Hook) Set(handler http.Handler) { h.handler.Store(&handler) }

// Env configures MinIO's webhook target SLUICE to post here; a queue
// folder makes MinIO keep and retry events (delivered every 3 s).
func (h *Hook) Env(queueDir string) []string {
	env := []string{"MINIO_NOTIFY_WEBHOOK_ENABLE_SLUICE=on", "MINIO_NOTIFY_WEBHOOK_ENDPOINT_SLUICE=" + h.srv.URL + "/hooks/s3"}
	if queueDir != "" {
		env = append(env, "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SLUICE="+queueDir)
	}
	return env
}

// WebhookARN is the ARN of the target Hook.Env configures.
const WebhookARN = "arn:minio:sqs::SLUICE:webhook"
