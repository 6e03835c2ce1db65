package brokers

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// The embedded queue has one consuming process: two processes reading one
// queue file would each take the same offsets and deliver every message
// twice. A process that consumes (subscribes or streams) takes an
// exclusive flock on a sidecar file, queue.db.lock, for as long as a
// broker on the file is open; a second process fails to subscribe with
// errQueueLocked. Publishing (sluice publish, put, dlq replay) needs no
// lock. Brokers of one process on one file share the lock (their turn
// locks already coordinate them). The kernel releases it when the process
// dies, so a crash leaves no stale lock.

// errQueueLocked: another process consumes the queue file.
var errQueueLocked = errors.New("another sluice process is consuming this queue")

var queueLocks = struct {
	sync.Mutex
	held map[string]*queueLock
}{held: map[string]*queueLock{}}

type queueLock struct {
	f    *os.File
	refs int
}

// lockQueue takes (or shares) the consumer lock of the queue at path;
// release gives it back.
func lockQueue(path string) (release func(), err error) {
	queueLocks.Lock()
	defer queueLocks.Unlock()
	l := queueLocks.held[path]
	if l == nil {
		f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("queue lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("sqlite queue %s: %w (the embedded queue serves one process; "+
					"stop the other `sluice run`, give this one another --home or --broker, or use Kafka to share work)", path, errQueueLocked)
			}
			return nil, fmt.Errorf("queue lock %s.lock: %w", path, err)
		}
		l = &queueLock{f: f}
		queueLocks.held[path] = l
	}
	l.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			queueLocks.Lock()
			defer queueLocks.Unlock()
			if l.refs--; l.refs == 0 {
				delete(queueLocks.held, path)
				l.f.Close() // releases the flock
			}
		})
	}, nil
}

// consume takes the broker's consumer lock on first use.
func (b *sqliteBroker) consume() error {
	b.lockMu.Lock()
	defer b.lockMu.Unlock()
	if b.unlock != nil {
		return nil
	}
	release, err := lockQueue(b.path)
	if err != nil {
		return err
	}
	b.unlock = release
	return nil
}

// releaseConsumer gives the consumer lock back (at Close).
func (b *sqliteBroker) releaseConsumer() {
	b.lockMu.Lock()
	defer b.lockMu.Unlock()
	if b.unlock != nil {
		b.unlock()
		b.unlock = nil
	}
}
