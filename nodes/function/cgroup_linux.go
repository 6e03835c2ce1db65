package function

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Workers get a cgroup v2 child each when Sluice may make one: memory.max
// caps the worker with everything it starts (page cache and children
// included, where RLIMIT_DATA counts one process's heap), cpu.max its share
// of CPUs. Sluice needs the memory and cpu controllers in its own cgroup
// (a container or a systemd unit with Delegate=yes); it then moves itself
// into a leaf "sluice" beside the workers, as cgroup v2 allows no process
// in a cgroup that hands controllers down.

var (
	cgroupOnce sync.Once
	cgroupDir  string // where worker cgroups are made
	cgroupErr  error  // why there are none
	cgroupSeq  atomic.Uint64
)

// workerCgroups returns the folder worker cgroups go in, or why there is
// none; it prepares it the first time.
func workerCgroups() (string, error) {
	cgroupOnce.Do(func() { cgroupDir, cgroupErr = prepareCgroups() })
	return cgroupDir, cgroupErr
}

func prepareCgroups() (string, error) {
	mnt, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	rel := ""
	for _, l := range strings.Split(string(own), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			rel = p
		}
	}
	dir := filepath.Join(mnt, rel)
	ctrl, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return "", err
	}
	have := strings.Fields(string(ctrl))
	if !slices.Contains(have, "memory") || !slices.Contains(have, "cpu") {
		return "", fmt.Errorf("cgroup v2 %s offers %q, not memory and cpu (cgroup v1, or not delegated)", dir, strings.Join(have, " "))
	}
	enable := func() error {
		return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0)
	}
	if err := enable(); err != nil {
		// Busy: Sluice is in dir itself. Move it into a leaf, then retry.
		leaf := filepath.Join(dir, "sluice")
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("cgroup %s: %w", leaf, err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return "", fmt.Errorf("cgroup: move Sluice into %s: %w", leaf, err)
		}
		if err := enable(); err != nil {
			return "", fmt.Errorf("cgroup %s: enable memory and cpu: %w", dir, err)
		}
	}
	return dir, nil
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(pre); ok && len(f) > 4 && strings.HasPrefix(post, "cgroup2 ") {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy mounted")
}

// workerCgroup is one worker's cgroup.
type workerCgroup struct {
	dir string
	fd  *os.File
}

// newWorkerCgroup makes a cgroup with the given limits (memory in bytes,
// cpus in CPUs; 0: none) and sets cmd to start inside it.
func newWorkerCgroup(parent string, cmd *exec.Cmd, memory int64, cpus float64) (*workerCgroup, error) {
	dir := filepath.Join(parent, fmt.Sprintf("fn-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cg := &workerCgroup{dir: dir}
	set := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			return fmt.Errorf("cgroup %s: %w", file, err)
		}
		return nil
	}
	var err error
	if memory > 0 {
		err = set("memory.max", strconv.FormatInt(memory, 10))
		if _, serr := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil && serr == nil {
			err = set("memory.swap.max", "0")
		}
	}
	if cpus > 0 && err == nil {
		err = set("cpu.max", fmt.Sprintf("%d 100000", int64(cpus*100000)))
	}
	if err == nil {
		cg.fd, err = os.Open(dir)
	}
	if err != nil {
		cg.remove()
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.fd.Fd())
	return cg, nil
}

// oomKilled tells whether the cgroup's memory.max killed a process.
func (cg *workerCgroup) oomKilled() bool {
	b, err := os.ReadFile(filepath.Join(cg.dir, "memory.events"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(l, "oom_kill "); ok {
			return n != "0"
		}
	}
	return false
}

// remove deletes the cgroup once its processes are gone.
func (cg *workerCgroup) remove() {
	if cg.fd != nil {
		_ = cg.fd.Close()
	}
	_ = os.Remove(cg.dir)
}
