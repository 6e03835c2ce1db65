package sqlitedb

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// ShortBusy is the busy timeout of databases whose writers wait in Go
// (WhileBusy) rather than in SQLite's busy handler, which sleeps in C and
// does not notice a cancelled context.
const ShortBusy = 20 * time.Millisecond

// IsBusy reports whether err is SQLite's "database is locked" or "busy".
func IsBusy(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return err != nil && (strings.Contains(err.Error(), "database is locked") || strings.Contains(err.Error(), "database table is locked"))
}

// WhileBusy calls fn until it returns something other than a busy error,
// waiting a little longer each time (1ms, doubling, up to 50ms), for as
// long as ctx allows: a locked database then holds a caller no longer than
// its deadline. Open the database with ShortBusy (OpenTimeout) so each
// call gives up quickly.
func WhileBusy(ctx context.Context, fn func() error) error {
	wait := time.Millisecond
	for {
		err := fn()
		if !IsBusy(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
}
