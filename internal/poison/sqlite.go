package poison

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/sqlitedb"
)

// File names in the Sluice home.
const (
	SlotsFile = "inflight.slots"
	DBFile    = "poison.db"
)

// Slot layout: a fixed-size record per run in flight, rewritten in place.
const (
	slotSize  = 512
	slotMagic = 0x534c5431 // "SLT1": the slot is in use
	offCRC    = 4
	offKey    = 8
	offLens   = 24
	offText   = 28
	textRoom  = slotSize - offText
)

// Forget is how long a crash count is kept without the input being seen
// again; older counts are dropped at start.
const Forget = 30 * 24 * time.Hour

type key [16]byte

func keyOf(flow, input string) key {
	var k key
	var buf [256]byte
	if n := len(flow) + 1 + len(input); n <= len(buf) {
		copy(buf[copy(buf[:], flow)+1:], input)
		sum := sha256.Sum256(buf[:n])
		copy(k[:], sum[:])
		return k
	}
	h := sha256.New()
	io.WriteString(h, flow)
	h.Write([]byte{0})
	io.WriteString(h, input)
	copy(k[:], h.Sum(nil))
	return k
}

type attempt struct {
	slot    int64
	suspect bool
}

// SQLite is the Store of a Sluice home: a file of slots, one per run in
// flight, written with pwrite, and the crash counts in a SQLite database
// beside it. One process at a time may use a home (Open locks the slots
// file).
type SQLite struct {
	f  *os.File
	db *sql.DB

	mu       sync.Mutex
	free     []int64
	next     int64 // slots the file holds
	inflight map[key][]attempt
	counts   map[key]int
	suspect  chan struct{} // one suspect runs at a time
}

var _ Store = (*SQLite)(nil)

// Open opens the home's store: it counts the inputs the slots file shows
// in flight (the process died while running them), then starts with an
// empty slots file. It fails with ErrLocked when another process has the
// home open.
func Open(ctx context.Context, home string) (*SQLite, error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("poison: %w", err)
	}
	path := filepath.Join(home, SlotsFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("poison: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("poison: %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("poison: lock %s: %w", path, err)
	}
	s := &SQLite{f: f, inflight: map[key][]attempt{}, counts: map[key]int{}, suspect: make(chan struct{}, 1)}
	if err := s.open(ctx, home); err != nil {
		f.Close()
		if s.db != nil {
			s.db.Close()
		}
		return nil, err
	}
	return s, nil
}

type died struct {
	k           key
	flow, input string
}

func (s *SQLite) open(ctx context.Context, home string) error {
	raw, err := io.ReadAll(s.f)
	if err != nil {
		return fmt.Errorf("poison: read %s: %w", s.f.Name(), err)
	}
	var dead []died
	for off := 0; off+slotSize <= len(raw); off += slotSize {
		if d, ok := decodeSlot(raw[off : off+slotSize]); ok {
			dead = append(dead, d)
		}
	}
	s.db, err = sqlitedb.Open(filepath.Join(home, DBFile), sqlitedb.SyncNormal)
	if err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	s.db.SetMaxOpenConns(1)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	defer tx.Rollback()
	now := time.Now().UTC()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS crashes (id TEXT PRIMARY KEY, flow TEXT NOT NULL, input TEXT NOT NULL, count INTEGER NOT NULL, last TEXT NOT NULL)`,
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("poison: %w", err)
		}
	}
	for _, d := range dead {
		if _, err := tx.ExecContext(ctx, `INSERT INTO crashes (id, flow, input, count, last) VALUES (?, ?, ?, 1, ?)
			ON CONFLICT (id) DO UPDATE SET count = count + 1, last = excluded.last`,
			hex.EncodeToString(d.k[:]), d.flow, d.input, now.Format(time.RFC3339)); err != nil {
			return fmt.Errorf("poison: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM crashes WHERE last < ?`, now.Add(-Forget).Format(time.RFC3339)); err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, count FROM crashes`)
	if err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return fmt.Errorf("poison: %w", err)
		}
		var k key
		if b, err := hex.DecodeString(id); err == nil && len(b) == len(k) {
			copy(k[:], b)
			s.counts[k] = n
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("poison: %w", err)
	}
	// Counted: the slots start empty. (A death right here, between the
	// commit and the truncation, counts those inputs twice.)
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("poison: truncate %s: %w", s.f.Name(), err)
	}
	return nil
}

// Crashes returns how many deaths of the process input was in flight for.
func (s *SQLite) Crashes(flow, input string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[keyOf(flow, input)]
}

// Begin implements Store.
func (s *SQLite) Begin(ctx context.Context, flow, input string) (int, error) {
	k := keyOf(flow, input)
	s.mu.Lock()
	crashes := s.counts[k]
	s.mu.Unlock()
	if crashes > 0 {
		select {
		case s.suspect <- struct{}{}:
		case <-ctx.Done():
			return crashes, fmt.Errorf("poison: waiting to run suspect %s of %s alone: %w", input, flow, context.Cause(ctx))
		}
	}
	s.mu.Lock()
	var slot int64
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
	} else {
		slot = s.next
		s.next++
	}
	s.inflight[k] = append(s.inflight[k], attempt{slot: slot, suspect: crashes > 0})
	s.mu.Unlock()

	var buf [slotSize]byte
	encodeSlot(&buf, k, flow, input)
	if _, err := s.f.WriteAt(buf[:], slot*slotSize); err != nil {
		s.drop(k, slot)
		if crashes > 0 {
			<-s.suspect
		}
		return crashes, fmt.Errorf("poison: record %s of %s in flight: %w", input, flow, err)
	}
	return crashes, nil
}

// drop removes the attempt in slot from the in-flight map and frees the slot.
func (s *SQLite) drop(k key, slot int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.inflight[k]
	for i, a := range as {
		if a.slot == slot {
			as = append(as[:i], as[i+1:]...)
			break
		}
	}
	if len(as) == 0 {
		delete(s.inflight, k)
	} else {
		s.inflight[k] = as
	}
	s.free = append(s.free, slot)
}

// End implements Store.
func (s *SQLite) End(ctx context.Context, flow, input string) error {
	k := keyOf(flow, input)
	s.mu.Lock()
	as := s.inflight[k]
	if len(as) == 0 {
		s.mu.Unlock()
		return fmt.Errorf("poison: end of %s of %s, which did not begin", input, flow)
	}
	a := as[len(as)-1]
	crashes := s.counts[k]
	delete(s.counts, k)
	s.mu.Unlock()

	var zero [4]byte
	_, werr := s.f.WriteAt(zero[:], a.slot*slotSize)
	if werr == nil {
		s.drop(k, a.slot)
	} else {
		// The slot cannot be cleared: leave it used, so it is not reused.
		s.mu.Lock()
		s.inflight[k] = as[:len(as)-1]
		if len(s.inflight[k]) == 0 {
			delete(s.inflight, k)
		}
		s.mu.Unlock()
	}
	var derr error
	if crashes > 0 {
		// Rare (an input that was in flight at a death): a commit here
		// is no cost on the common path.
		_, derr = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM crashes WHERE id = ?`, hex.EncodeToString(k[:]))
	}
	if a.suspect {
		<-s.suspect
	}
	if werr != nil {
		return fmt.Errorf("poison: clear %s of %s: %w", input, flow, werr)
	}
	if derr != nil {
		return fmt.Errorf("poison: forget the crashes of %s of %s: %w", input, flow, derr)
	}
	return nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	return errors.Join(s.db.Close(), s.f.Close())
}

func encodeSlot(buf *[slotSize]byte, k key, flow, input string) {
	copy(buf[offKey:], k[:])
	fl := min(len(flow), textRoom)
	il := min(len(input), textRoom-fl)
	binary.LittleEndian.PutUint16(buf[offLens:], uint16(fl))
	binary.LittleEndian.PutUint16(buf[offLens+2:], uint16(il))
	copy(buf[offText:], flow[:fl])
	copy(buf[offText+fl:], input[:il])
	binary.LittleEndian.PutUint32(buf[offCRC:], crc32.ChecksumIEEE(buf[offKey:]))
	binary.LittleEndian.PutUint32(buf[0:], slotMagic)
}

func decodeSlot(b []byte) (died, bool) {
	if binary.LittleEndian.Uint32(b[0:]) != slotMagic || binary.LittleEndian.Uint32(b[offCRC:]) != crc32.ChecksumIEEE(b[offKey:slotSize]) {
		return died{}, false
	}
	var d died
	copy(d.k[:], b[offKey:offLens])
	fl := int(binary.LittleEndian.Uint16(b[offLens:]))
	il := int(binary.LittleEndian.Uint16(b[offLens+2:]))
	if fl+il > textRoom {
		return died{}, false
	}
	d.flow = string(b[offText : offText+fl])
	d.input = string(b[offText+fl : offText+fl+il])
	return d, true
}
