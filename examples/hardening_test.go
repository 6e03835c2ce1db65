package examples_test

// Attacks of issue 13 on folder buckets, damaged state and input hygiene,
// each through the real binary: hostile files dropped into buckets, an
// emptied queue or state database, bad topics and keys, credentials in
// URLs.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/miniotest"
)

// cliFails runs a sluice command in dir that must fail, and returns its
// output. A command that does not fail is stopped after two minutes (a
// "sluice run" that should have refused to start would run forever).
func cliFails(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sluiceBin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "sluice %s should fail:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func writeFlow(t *testing.T, dir, name, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o644))
	return p
}

// copyFlow copies every object of "uploads" to "out"; escapeFlow writes
// each message of topic "esc" to out/sub/x, where sub is a link to a
// folder outside.
const copyFlow = `name: copy
on: {bucket: uploads}
steps:
  - node: storage.put
    with: {bucket: out}
`

const escapeFlow = `name: escape
on: {topic: esc}
steps:
  - node: storage.put
    with: {bucket: out, key: sub/x, content: payload}
`

// TestHostileFilesInFolderBuckets drops links (to /dev/zero, to a file
// outside, to a folder outside) and named pipes into buckets: none is read
// or written through, later uploads run, a write through a linked folder is
// refused, SIGTERM ends the process, and a temporary file a killed writer
// left is removed.
func TestHostileFilesInFolderBuckets(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	flows := t.TempDir()
	writeFlow(t, flows, "copy.yaml", copyFlow)
	writeFlow(t, flows, "escape.yaml", escapeFlow)
	buckets := filepath.Join(dir, ".sluice", "buckets")
	uploads, out := filepath.Join(buckets, "uploads"), filepath.Join(buckets, "out")
	require.NoError(t, os.MkdirAll(uploads, 0o755))
	require.NoError(t, os.MkdirAll(out, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("secret"), 0o644))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(uploads, "zero.png")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(uploads, "secret.txt")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(uploads, "pipe.png"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(out, "sub")))
	stale := filepath.Join(uploads, ".sluice-tmp-killed")
	require.NoError(t, os.WriteFile(stale, []byte("half"), 0o644))
	old := time.Now().Add(-3 * time.Hour)
	require.NoError(t, os.Chtimes(stale, old, old))

	in := run(t, dir, flows)
	// Dropped while running, too.
	require.NoError(t, syscall.Mkfifo(filepath.Join(uploads, "pipe2.png"), 0o644))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(uploads, "zero2.png")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "normal.txt"), []byte("normal"), 0o644))
	cli(t, dir, "put", "uploads", "normal.txt")
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(out, "normal.txt"))
		return err == nil && string(b) == "normal"
	}, 20*time.Second, 20*time.Millisecond, "the upload after the pipes must run:\n%s", in.log)
	require.Eventually(t, func() bool {
		_, err := os.Stat(stale)
		return os.IsNotExist(err)
	}, 20*time.Second, 20*time.Millisecond, "the stale temporary file is removed")

	// A flow writing through the linked folder is refused, permanently.
	cli(t, dir, "publish", "esc", `{"x":1}`)
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "dlq", "list"), "escape")
	}, 20*time.Second, 50*time.Millisecond, "the escaping write is dead-lettered:\n%s", in.log)
	assert.Contains(t, cli(t, dir, "dlq", "list", "--json"), "symbolic link")
	// So is sluice put --key through it.
	msg := cliFails(t, dir, "put", "--key", "sub/x", "out", "normal.txt")
	assert.Contains(t, msg, "symbolic link")
	assert.NoFileExists(t, filepath.Join(outside, "x"), "nothing written outside the bucket")
	// sluice put of a named pipe refuses it rather than block on it.
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.png"), 0o644))
	assert.Contains(t, cliFails(t, dir, "put", "uploads", "fifo.png"), "not a regular file")

	in.stop()
	require.True(t, in.cmd.ProcessState.Success(), "SIGTERM ends the run cleanly:\n%s", in.log)
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"normal.txt", "sub"}, names, "links and pipes were not copied")
	runs := cli(t, dir, "runs", "--flow", "copy")
	for _, name := range []string{"zero", "secret", "pipe"} {
		assert.NotContains(t, runs, name, "no run for a link or a pipe")
	}
}

// TestEmptiedDatabasesAreRefused empties queue.db with messages pending,
// and state.db after runs: sluice refuses to start, naming the file and
// the flag, and starts afresh with --accept-new-state.
func TestEmptiedDatabasesAreRefused(t *testing.T) {
	dir, flows := t.TempDir(), t.TempDir()
	writeFlow(t, flows, "orders.yaml", "name: orders\non: {topic: orders}\nsteps:\n  - node: log\n    with: {message: 'order {{ payload.id }}'}\n")
	home := filepath.Join(dir, ".sluice")

	// Pending messages, no flow consuming them yet.
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		cli(t, dir, "publish", "pending", `{"id":"`+id+`"}`)
	}
	queue := filepath.Join(home, "queue.db")
	require.NoError(t, os.Truncate(queue, 0))
	msg := cliFails(t, dir, "run", "--listen", "", flows)
	assert.Contains(t, msg, queue+" has no Sluice identity")
	assert.Contains(t, msg, "queued messages")
	assert.Contains(t, msg, "--accept-new-state")
	msg = cliFails(t, dir, "publish", "orders", `{}`)
	assert.Contains(t, msg, "has no Sluice identity", "every command refuses it")

	in := run(t, dir, "--accept-new-state", flows)
	cli(t, dir, "publish", "orders", `{"id":"o-4"}`)
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "runs", "--flow", "orders"), "succeeded")
	}, 20*time.Second, 50*time.Millisecond, "%s", in.log)
	in.stop()
	assert.Contains(t, in.log.String(), "accepted a database")

	// The state database, emptied after runs.
	state := filepath.Join(home, "state.db")
	require.NoError(t, os.Truncate(state, 0))
	msg = cliFails(t, dir, "run", "--listen", "", flows)
	assert.Contains(t, msg, state+" has no Sluice identity")
	assert.Contains(t, msg, "run history")
	assert.Contains(t, cliFails(t, dir, "runs"), state+" has no Sluice identity")

	// Deleted counts as emptied; SLUICE_ACCEPT_NEW_STATE is the flag's env.
	require.NoError(t, os.Remove(state))
	cliFails(t, dir, "runs")
	cmd := exec.Command(sluiceBin, "runs")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "SLUICE_ACCEPT_NEW_STATE=true")
	outText, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", outText)
	assert.Contains(t, string(outText), "accepted a database that is not the one recorded")
	assert.True(t, strings.HasSuffix(string(outText), "no runs\n"), "%s", outText)
	cli(t, dir, "runs") // accepted once, recorded: no flag needed any more
}

// TestInputHygiene: topics no flow can read, keys that lie on a terminal
// and messages over the size limit are refused with the reason; a hostile
// object name is printed escaped.
func TestInputHygiene(t *testing.T) {
	dir, flows := t.TempDir(), t.TempDir()
	writeFlow(t, flows, "copy.yaml", copyFlow)

	assert.Contains(t, cliFails(t, dir, "publish", "", `{}`), `invalid topic name "": empty`)
	assert.Contains(t, cliFails(t, dir, "publish", strings.Repeat("t", 201), `{}`), "longer than 200 characters")
	assert.Contains(t, cliFails(t, dir, "publish", "a/b", `{}`), "may hold only letters, digits and - $ : . _")
	big := filepath.Join(dir, "big.json")
	require.NoError(t, os.WriteFile(big, []byte(`"`+strings.Repeat("x", 10<<20)+`"`), 0o644))
	assert.Contains(t, cliFails(t, dir, "publish", "orders", "@"+big), "over the broker's message limit of 10485760 bytes (max_message_bytes)")
	assert.Contains(t, cliFails(t, dir, "publish", "--broker", "sqlite://.sluice/queue.db?max_message_bytes=10", "orders", `{"id":"o-1234567"}`),
		"over the broker's limit of 10 (max_message_bytes)")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.txt"), []byte("x"), 0o644))
	for _, key := range []string{"invoice\u202egpj.exe", "next\u0085line", "esc\x1b[31m"} {
		assert.Contains(t, cliFails(t, dir, "put", "--key", key, "uploads", "f.txt"), "invalid object key")
	}

	// Dropped straight into the folder: the run fails with the reason, and
	// the CLI prints the name escaped.
	in := run(t, dir, flows)
	uploads := filepath.Join(dir, ".sluice", "buckets", "uploads")
	require.NoError(t, os.MkdirAll(uploads, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(uploads, "invoice\u202egpj.exe"), []byte("x"), 0o644))
	var runs string
	require.Eventually(t, func() bool {
		runs = cli(t, dir, "runs", "--flow", "copy")
		return strings.Contains(runs, "dead_lettered")
	}, 20*time.Second, 50*time.Millisecond, "%s", in.log)
	assert.NotContains(t, runs, "\u202e", "never printed raw")
	assert.Contains(t, runs, `invoice\u202egpj.exe`)
	assert.NotContains(t, cli(t, dir, "dlq", "list"), "\u202e")
	in.stop()
}

// TestCredentialsNeverPrinted runs the binary on MinIO and SASL-protected
// Kafka with the secrets in the URLs (flags and environment), through a
// start, a run, failures and --help: the secrets appear nowhere.
func TestCredentialsNeverPrinted(t *testing.T) {
	const kafkaSecret = "kafka-Secret-PW-91"
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "sluice", kafkaSecret))
	require.NoError(t, err)
	defer kafka.Close()
	srv := miniotest.Start(t)
	brokerURL := "kafka://sluice:" + kafkaSecret + "@" + strings.Join(kafka.ListenAddrs(), ",") + "?sasl=PLAIN&max_wait=20ms"
	storageURL := srv.URL()
	secrets := []string{kafkaSecret, srv.SecretKey}

	dir, flows := t.TempDir(), t.TempDir()
	writeFlow(t, flows, "orders.yaml", "name: orders\non: {topic: orders}\nsteps:\n  - node: log\n    with: {message: 'order {{ payload.id }}'}\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.txt"), []byte("x"), 0o644))
	var printed strings.Builder
	in := run(t, dir, "--broker", brokerURL, "--storage", storageURL, "--log-level", "debug", flows)
	printed.WriteString(cli(t, dir, "publish", "--broker", brokerURL, "orders", `{"id":"o-1"}`))
	require.Eventually(t, func() bool {
		return strings.Contains(cli(t, dir, "runs", "--flow", "orders"), "succeeded")
	}, 30*time.Second, 100*time.Millisecond, "%s", in.log)
	in.stop()
	printed.WriteString(in.log.String())
	assert.Contains(t, in.log.String(), "sluice:xxxxx@", "the broker URL is logged, redacted")

	withEnv := func(args ...string) string {
		cmd := exec.Command(sluiceBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SLUICE_BROKER="+brokerURL, "SLUICE_STORAGE="+storageURL)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	printed.WriteString(withEnv("--help"))
	printed.WriteString(withEnv("run", "--help"))
	// Failures: a URL that does not parse, an unreachable broker, an
	// unknown scheme.
	printed.WriteString(cliFails(t, dir, "publish", "--broker", "kafka://u:"+kafkaSecret+"@host:9092/%zz", "orders", `{}`))
	printed.WriteString(cliFails(t, dir, "publish", "--broker", "kafka://u:"+kafkaSecret+"@127.0.0.1:1?sasl=PLAIN", "orders", `{}`))
	printed.WriteString(cliFails(t, dir, "put", "--storage", "nope://k:"+srv.SecretKey+"@x", "b-1", "f.txt"))
	for _, s := range secrets {
		assert.NotContains(t, printed.String(), s, "a secret was printed")
	}
}
