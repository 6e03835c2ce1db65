// Package dbident detects a Sluice database that was emptied, deleted or
// replaced behind Sluice's back.
//
// SQLite refuses a damaged file ("malformed"), but a file truncated to zero
// bytes, deleted, or swapped for another database opens as a valid one:
// the queue would start empty and the state database would forget every
// object it had processed, silently. So each database gets an identity
// when it is created: a random id in a one-row table (sluice_identity),
// recorded as well in a sidecar file beside the database (PATH.sluice-id).
// At open, Check compares them:
//
//   - database without an id, no sidecar: new (or made before identities
//     existed): an id is created and recorded;
//   - database without an id, sidecar present: emptied, deleted or
//     replaced: refused with ErrIdentityLost;
//   - database id differs from the sidecar's: replaced by another Sluice
//     database: refused;
//   - database id, no sidecar: the database was moved or the sidecar lost:
//     the sidecar is written again.
//
// An operator who means to start afresh says so (sluice --accept-new-state,
// SetAcceptNew): the database gets a new id, or keeps its own, and the
// sidecar is rewritten.
package dbident

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// ErrIdentityLost is returned by Check for a database that is not the one
// its sidecar recorded.
var ErrIdentityLost = errors.New("database identity lost")

var acceptNew atomic.Bool

// SetAcceptNew makes Check, process-wide, accept a database that lost its
// identity (the operator's --accept-new-state) instead of refusing it.
func SetAcceptNew(on bool) { acceptNew.Store(on) }

// Sidecar is the file beside a database that records its identity.
func Sidecar(path string) string { return path + ".sluice-id" }

// record is the sidecar's content.
type record struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Database string    `json:"database"`
}

// Check verifies, or on a new database creates, the identity of the
// database db opened from the file path. holds says what the database
// keeps ("queued messages"), for the message that refuses it. Check must be
// called before the database's schema is created: a refused database is
// left as it was.
func Check(ctx context.Context, db *sql.DB, path, holds string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	side := Sidecar(abs)
	want, err := readSidecar(side)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("identity of %s: %w", abs, err)
	}
	defer tx.Rollback()
	var have record
	have.Database = filepath.Base(abs)
	var createdMS int64
	err = tx.QueryRowContext(ctx, `SELECT id, created_ms FROM sluice_identity LIMIT 1`).Scan(&have.ID, &createdMS)
	switch {
	case err == nil:
		have.Created = time.UnixMilli(createdMS).UTC()
	case errors.Is(err, sql.ErrNoRows) || isNoTable(err):
		have.ID = ""
	default:
		return fmt.Errorf("identity of %s: %w", abs, err)
	}

	accepted := false
	switch {
	case want != nil && have.ID == "":
		if !acceptNew.Load() {
			return fmt.Errorf("%w: %s has no Sluice identity, but %s records that database %s (created %s) was there: the file was emptied, deleted or replaced, and the %s it held are not in it. "+
				"Restore the file (with its -wal file, if any) from a backup, or, to start with an empty database, run again with --accept-new-state (env SLUICE_ACCEPT_NEW_STATE=true). Nothing was changed",
				ErrIdentityLost, abs, side, want.ID, want.Created.Format(time.RFC3339), holds)
		}
		accepted = true
	case want != nil && have.ID != want.ID:
		if !acceptNew.Load() {
			return fmt.Errorf("%w: %s is database %s (created %s), but %s records database %s (created %s) there: the file was replaced by another database, and the %s of the recorded one are not in it. "+
				"Put the right file back, or, to keep this one, run again with --accept-new-state (env SLUICE_ACCEPT_NEW_STATE=true). Nothing was changed",
				ErrIdentityLost, abs, have.ID, have.Created.Format(time.RFC3339), side, want.ID, want.Created.Format(time.RFC3339), holds)
		}
		accepted = true
	case want != nil:
		return nil // the recorded database
	}
	if have.ID == "" {
		have.ID, have.Created = newID(), time.Now().UTC().Truncate(time.Millisecond)
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS sluice_identity (id TEXT NOT NULL, created_ms INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("identity of %s: %w", abs, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sluice_identity (id, created_ms) VALUES (?, ?)`, have.ID, have.Created.UnixMilli()); err != nil {
			return fmt.Errorf("identity of %s: %w", abs, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("identity of %s: %w", abs, err)
	}
	if err := writeSidecar(side, have); err != nil {
		return err
	}
	if accepted {
		slog.Warn("accepted a database that is not the one recorded (--accept-new-state)", "database", abs, "id", have.ID, "recorded", want.ID)
	}
	return nil
}

func isNoTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func readSidecar(side string) (*record, error) {
	b, err := os.ReadFile(side)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read database identity: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
		return nil, fmt.Errorf("%s is not a database identity record (want {\"id\": ...}); remove it if the database beside it is the right one", side)
	}
	return &r, nil
}

// writeSidecar replaces the sidecar atomically (temporary file, sync,
// rename).
func writeSidecar(side string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(side), filepath.Base(side)+".tmp-*")
	if err != nil {
		return fmt.Errorf("record database identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), side)
	}
	if err != nil {
		return fmt.Errorf("record database identity: %w", err)
	}
	return nil
}
