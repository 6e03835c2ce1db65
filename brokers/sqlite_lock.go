package brokers

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
)

// The embedded queue has one consuming process per consumer group: two
// processes consuming one group of one queue file would each read the
// same offsets and deliver every message twice. A process that consumes
// a group (subscribes or streams) takes a lock on it in a sidecar file,
// queue.db.lock, for as long as a broker on the file is open; a second
// process fails to subscribe with errQueueLocked. Publishing (sluice
// publish, put, dlq replay) and other groups (a reader of an output
// topic) need no lock held by the first. Brokers of one process share
// the process's locks (their turn locks already coordinate them). The
// kernel drops the locks when the process dies: a crash leaves none.
//
// On Linux a group's lock is an open-file-description lock on one byte
// of the sidecar (the group name's hash); elsewhere the whole file is
// locked, so a queue has one consuming process (see sqlite_lock_*.go).

// errQueueLocked: another process consumes the group on this queue file.
var errQueueLocked = errors.New("another sluice process is consuming this queue")

// lockFiles is the process's open sidecar per queue path; one open file
// description holds all of the process's locks on the file.
var lockFiles = struct {
	sync.Mutex
	files map[string]*lockFile
}{files: map[string]*lockFile{}}

type lockFile struct {
	f    *os.File
	refs int            // brokers using the file
	held map[int64]bool // offsets locked
}

// groupOffset is the byte of the sidecar that stands for group.
func groupOffset(group string) int64 {
	h := fnv.New64a()
	h.Write([]byte(group))
	return int64(h.Sum64() & (1<<46 - 1))
}

// consume takes this broker's process lock on group, on first use.
func (b *sqliteBroker) consume(group string) error {
	lockFiles.Lock()
	defer lockFiles.Unlock()
	lf := lockFiles.files[b.path]
	if lf == nil {
		f, err := os.OpenFile(b.path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("queue lock: %w", err)
		}
		lf = &lockFile{f: f, held: map[int64]bool{}}
		lockFiles.files[b.path] = lf
	}
	if !b.lockRef {
		b.lockRef = true
		lf.refs++
	}
	off := groupOffset(group)
	if lf.held[off] {
		return nil
	}
	busy, err := lockRange(lf.f, off)
	if err != nil {
		return fmt.Errorf("queue lock %s.lock: %w", b.path, err)
	}
	if busy {
		return fmt.Errorf("sqlite queue %s, consumer group %q: %w (the embedded queue serves one process; "+
			"stop the other `sluice run`, give this one another --home or --broker, or use Kafka to share work)", b.path, group, errQueueLocked)
	}
	lf.held[off] = true
	return nil
}

// releaseConsumer drops this broker's use of the locks (at Close); the
// last broker of the process on the file releases them.
func (b *sqliteBroker) releaseConsumer() {
	lockFiles.Lock()
	defer lockFiles.Unlock()
	if !b.lockRef {
		return
	}
	b.lockRef = false
	lf := lockFiles.files[b.path]
	if lf.refs--; lf.refs == 0 {
		delete(lockFiles.files, b.path)
		lf.f.Close() // releases every lock of the file description
	}
}
