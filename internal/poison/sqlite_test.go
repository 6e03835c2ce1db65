package poison_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/internal/poison"
)

// TestMain doubles as the child process of the death tests: with
// POISON_CHILD set it opens the store, begins the inputs named there and
// kills itself with SIGKILL, as a fatal out-of-memory error would end it
// (no deferred code, no flush).
func TestMain(m *testing.M) {
	if spec := os.Getenv("POISON_CHILD"); spec != "" {
		parts := strings.Split(spec, "|")
		s, err := poison.Open(context.Background(), parts[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		for _, in := range parts[2:] {
			// A suspect waits for the one running: it is not in flight
			// when the process dies.
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_, err := s.Begin(ctx, parts[1], in)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	os.Exit(m.Run())
}

// die runs a child process that begins inputs of flow in home and dies.
func die(t *testing.T, home, flow string, inputs ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POISON_CHILD="+strings.Join(append([]string{home, flow}, inputs...), "|"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output: %s", out)
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child ended with %v: %s", err, out)
}

func open(t *testing.T, home string) *poison.SQLite {
	t.Helper()
	s, err := poison.Open(t.Context(), home)
	require.NoError(t, err)
	return s
}

// An input in flight at a death is counted, across real process deaths
// (SIGKILL: nothing flushed, nothing synced). After the first death both
// inputs are suspects and run one at a time, so the next deaths are blamed
// on the one that was running: it reaches DefaultMaxCrashes, the other
// stays at one. One that finished is forgotten.
func TestDeathsAreCounted(t *testing.T) {
	home := t.TempDir()
	long := strings.Repeat("k", 2000) // longer than a slot: counted by its hash
	for i := range poison.DefaultMaxCrashes {
		die(t, home, "orders", "msg-bomb", long)
		s := open(t, home)
		assert.Equal(t, i+1, s.Crashes("orders", "msg-bomb"))
		assert.Equal(t, 1, s.Crashes("orders", long), "not in flight at the later deaths: it waited")
		assert.Equal(t, 0, s.Crashes("other-flow", "msg-bomb"), "counts are per flow")
		require.NoError(t, s.Close())
	}

	s := open(t, home)
	crashes, err := s.Begin(t.Context(), "orders", "msg-bomb")
	require.NoError(t, err)
	assert.Equal(t, poison.DefaultMaxCrashes, crashes, "the engine dead-letters it now, without running it")
	require.NoError(t, s.End(t.Context(), "orders", "msg-bomb"))
	// The innocent one runs, alone, to its end: forgotten.
	crashes, err = s.Begin(t.Context(), "orders", long)
	require.NoError(t, err)
	assert.Equal(t, 1, crashes)
	require.NoError(t, s.End(t.Context(), "orders", long))
	// A normal run leaves nothing behind.
	_, err = s.Begin(t.Context(), "orders", "msg-ok")
	require.NoError(t, err)
	require.NoError(t, s.End(t.Context(), "orders", "msg-ok"))
	require.NoError(t, s.Close())

	s = open(t, home)
	defer s.Close()
	for _, in := range []string{"msg-bomb", long, "msg-ok"} {
		assert.Equal(t, 0, s.Crashes("orders", in), "ended inputs are forgotten, also in the database")
	}
}

// After a death, suspects run one at a time: the next death is blamed on
// the input that causes it, not on whatever ran beside it.
func TestSuspectsRunAlone(t *testing.T) {
	home := t.TempDir()
	die(t, home, "f", "a", "b")
	s := open(t, home)
	defer s.Close()

	crashes, err := s.Begin(t.Context(), "f", "a")
	require.NoError(t, err)
	assert.Equal(t, 1, crashes)

	// Not a suspect: runs beside it.
	_, err = s.Begin(t.Context(), "f", "fresh")
	require.NoError(t, err)
	require.NoError(t, s.End(t.Context(), "f", "fresh"))

	// b waits for a's end; its context ending first is an error.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = s.Begin(ctx, "f", "b")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan int, 1)
	go func() {
		n, err := s.Begin(t.Context(), "f", "b")
		assert.NoError(t, err)
		got <- n
	}()
	require.NoError(t, s.End(t.Context(), "f", "a"))
	select {
	case n := <-got:
		assert.Equal(t, 1, n)
	case <-t.Context().Done():
		t.Fatal("b never ran")
	}
	require.NoError(t, s.End(t.Context(), "f", "b"))
}

// One process per home: a second Open fails clearly.
func TestOneProcessPerHome(t *testing.T) {
	home := t.TempDir()
	s := open(t, home)
	_, err := poison.Open(t.Context(), home)
	require.ErrorIs(t, err, poison.ErrLocked)
	require.NoError(t, s.Close())
	s = open(t, home)
	require.NoError(t, s.Close())
}

// A damaged slots file is not a reason to stop: slots that do not check
// are ignored.
func TestDamagedSlotsAreIgnored(t *testing.T) {
	home := t.TempDir()
	die(t, home, "f", "x")
	path := filepath.Join(home, poison.SlotsFile)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, b, 512)
	b[100] ^= 0xff
	garbage := append(b, []byte("SLT1 and some garbage that is no slot")...)
	require.NoError(t, os.WriteFile(path, garbage, 0o600))
	s := open(t, home)
	defer s.Close()
	assert.Equal(t, 0, s.Crashes("f", "x"))
}

func TestEndWithoutBegin(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	require.ErrorContains(t, s.End(t.Context(), "f", "never"), "did not begin")
}

// BenchmarkBeginEnd is the cost the store adds to every message: two
// pwrites of the page cache, no commit.
func BenchmarkBeginEnd(b *testing.B) {
	s, err := poison.Open(b.Context(), b.TempDir())
	require.NoError(b, err)
	defer s.Close()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("01JD%022d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		if _, err := s.Begin(b.Context(), "orders", id); err != nil {
			b.Fatal(err)
		}
		if err := s.End(b.Context(), "orders", id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBeginEndParallel is the same with runs in flight at once.
func BenchmarkBeginEndParallel(b *testing.B) {
	s, err := poison.Open(b.Context(), b.TempDir())
	require.NoError(b, err)
	defer s.Close()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		id := fmt.Sprintf("%p", &i)
		for pb.Next() {
			in := fmt.Sprint(id, i)
			i++
			if _, err := s.Begin(context.Background(), "orders", in); err != nil {
				b.Error(err)
				return
			}
			if err := s.End(context.Background(), "orders", in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPwriteFloor is the floor BenchmarkBeginEnd compares with: the
// same two pwrites (a slot, then its clearing) and nothing else.
func BenchmarkPwriteFloor(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "floor"))
	require.NoError(b, err)
	defer f.Close()
	var slot [512]byte
	var zero [4]byte
	for b.Loop() {
		if _, err := f.WriteAt(slot[:], 0); err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteAt(zero[:], 0); err != nil {
			b.Fatal(err)
		}
	}
}

// Run runs an input with crashes below the limit and refuses one at it,
// ending both.
func TestRun(t *testing.T) {
	home := t.TempDir()
	for range 2 {
		die(t, home, "f", "bomb")
	}
	s := open(t, home)
	defer s.Close()
	ran := false
	err := poison.Run(t.Context(), s, 2, "f", "bomb", func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, poison.ErrPoisoned)
	assert.ErrorContains(t, err, "2 times")
	assert.False(t, ran, "not run again")
	assert.Equal(t, 0, s.Crashes("f", "bomb"), "ended: forgotten")

	boom := errors.New("step failed")
	err = poison.Run(t.Context(), s, 2, "f", "other", func(context.Context) error { ran = true; return boom })
	require.ErrorIs(t, err, boom, "a run's own error is returned as it is")
	assert.True(t, ran)
	require.NoError(t, poison.Run(t.Context(), poison.Nop{}, 2, "f", "x", func(context.Context) error { return nil }))
}
