package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// signalHelp is the part of the run and lock help that says what each
// signal does.
const signalHelp = `Signals:
  SIGTERM, SIGINT, SIGHUP  stop COMMAND (SIGTERM to its process group, SIGKILL
                           after --grace), release, exit with its status
  SIGUSR1, SIGUSR2, SIGWINCH
                           passed on to COMMAND (dropped while none runs)
  SIGTSTP (Ctrl-Z)         stop COMMAND's process group with SIGSTOP, then
                           stop leasehold itself
  SIGCONT                  if the term COMMAND runs under is still valid,
                           continue COMMAND; if it has ended meanwhile (the
                           renew deadline passed, another holder took over),
                           kill COMMAND's process group with SIGKILL instead,
                           so that it never runs again without the lease
  SIGSTOP, SIGKILL         cannot be caught. SIGSTOP stops leasehold but not
                           COMMAND, which keeps running while the lease
                           expires and another holder takes over; only the
                           fencing token (LEASEHOLD_TOKEN) protects what it
                           writes to then. On SIGCONT leasehold kills COMMAND
                           if the term has ended. SIGKILL of leasehold kills
                           COMMAND (Linux parent-death signal); the lease
                           expires.`

// Signals run and lock act on for their COMMAND.
var (
	forwardedSignals = []os.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}
	jobSignals       = []os.Signal{syscall.SIGTSTP, syscall.SIGCONT}
)

// notifyFunc subscribes c to signals until the returned function is called
// (signal.Notify and signal.Stop).
type notifyFunc func(c chan<- os.Signal, sig ...os.Signal) (stop func())

// supervisor relays signals to the COMMANDs of run or lock (one) or of
// run --shards (one per owned shard): it forwards SIGUSR1, SIGUSR2 and
// SIGWINCH to each; on SIGTSTP it stops each COMMAND's process group and
// then leasehold; on SIGCONT it continues each COMMAND whose term is still
// valid, and kills the others. Its methods are safe for concurrent use;
// close joins its goroutine.
type supervisor struct {
	errOut io.Writer
	self   func() // stops this process (the stop may take effect just after it returns)

	mu       sync.Mutex
	attached map[*child]*relay

	stopNotify func()
	quit       chan struct{}
	wg         sync.WaitGroup
}

// relay is one attached COMMAND.
type relay struct {
	name   string      // COMMAND's name, for messages
	holds  func() bool // the term COMMAND runs under is still valid
	killed bool        // COMMAND was killed on SIGCONT because its term had ended
}

// startSupervisor subscribes to the signals through notify (nil: none, as
// in tests that run a command in-process) and relays them until close.
func startSupervisor(notify notifyFunc, errOut io.Writer) *supervisor {
	s := &supervisor{errOut: errOut, self: stopSelf, quit: make(chan struct{}), stopNotify: func() {}, attached: map[*child]*relay{}}
	if notify == nil {
		return s
	}
	sigs := make(chan os.Signal, 8)
	s.stopNotify = notify(sigs, append(append([]os.Signal{}, forwardedSignals...), jobSignals...)...)
	s.wg.Go(func() {
		for {
			select {
			case <-s.quit:
				return
			case sig := <-sigs:
				s.handle(sig)
			}
		}
	})
	return s
}

// stopSelf stops this process with SIGSTOP, which cannot be caught, so that
// it stops even in an orphaned process group, where SIGTSTP is discarded.
// It may return just before the stop takes effect.
func stopSelf() { _ = syscall.Kill(os.Getpid(), syscall.SIGSTOP) }

// close stops relaying and waits for the relay to end.
func (s *supervisor) close() {
	s.stopNotify()
	close(s.quit)
	s.wg.Wait()
}

// start starts COMMAND as spec says and attaches it (see attach) before a
// signal that arrives meanwhile is relayed: one received while it starts
// waits and then reaches it, rather than find no COMMAND to go to.
func (s *supervisor) start(spec childSpec, name string, holds func() bool) (*child, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := startChild(spec)
	if err != nil {
		return nil, err
	}
	s.attached[c] = &relay{name: name, holds: holds}
	return c, nil
}

// attach adds c to the COMMANDs that signals are relayed to; holds reports
// whether the term it runs under is still valid (not ended, deadline not
// passed).
func (s *supervisor) attach(c *child, name string, holds func() bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attached[c] = &relay{name: name, holds: holds}
}

// detach stops relaying to c.
func (s *supervisor) detach(c *child) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.attached, c)
}

// killedOnResume reports whether c was killed on SIGCONT because its term
// had ended while leasehold was stopped.
func (s *supervisor) killedOnResume(c *child) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.attached[c]
	return r != nil && r.killed
}

func (s *supervisor) handle(sig os.Signal) {
	switch sig {
	case syscall.SIGTSTP:
		// The stop takes effect a moment after the signal is raised, so
		// what to do with COMMAND is decided on the SIGCONT that ends it.
		s.suspend()
	case syscall.SIGCONT:
		s.resume()
	default:
		s.mu.Lock()
		for c := range s.attached {
			c.forward(sig.(syscall.Signal))
		}
		s.mu.Unlock()
	}
}

// suspend stops COMMAND's process group, then this process.
func (s *supervisor) suspend() {
	if os.Getpid() == 1 {
		// PID 1 of a container cannot stop itself; stopping COMMAND alone
		// would leave it stopped while we renew the lease.
		return
	}
	s.mu.Lock()
	for c := range s.attached {
		c.signal(syscall.SIGSTOP)
	}
	s.mu.Unlock()
	s.self()
}

// resume runs after leasehold was continued: each COMMAND continues only
// while its term is valid; otherwise it must not run another instruction.
func (s *supervisor) resume() {
	var killed []string
	s.mu.Lock()
	for c, r := range s.attached {
		switch {
		case c.exited():
		case r.holds():
			c.signal(syscall.SIGCONT)
		default:
			c.signal(syscall.SIGKILL)
			if !r.killed {
				killed = append(killed, r.name)
			}
			r.killed = true
		}
	}
	s.mu.Unlock()
	for _, name := range killed {
		fmt.Fprintf(s.errOut, "leasehold: continued after the term ended while stopped; killed %s (SIGKILL to its process group)\n", name)
	}
}
