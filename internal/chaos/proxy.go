// Package chaos is Leasehold's safety harness: a TCP fault proxy put between
// each candidate process and the apiserver, a fenced resource, a seeded
// schedule of faults (latency, partition, connection reset, SIGSTOP, SIGKILL,
// apiserver restart) and a checker that turns the candidates' leadership
// terms into violations: overlapping terms, fencing tokens going backwards,
// stale writes to the fenced resource, and the longest time without a leader
// after the last fault healed. Clock-rate faults (a candidate whose clock
// runs fast or slow) are passed to the candidate process as a flag.
//
// A run also reports what keeps it from vouching for anything, for the
// caller to fail on: faults that could not be applied (Result.Failed, not
// counted as injected), candidates that exited with an error or crashed
// (Result.Errors), processes that did not stop cleanly (Result.Leftover),
// writes outside every term of their writer (FenceResult.Orphans), and a run
// with no term or no accepted write.
package chaos

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from a loopback port to a target address and
// injects faults at runtime: added latency per direction, a blackhole
// (partition) and resets of all connections. Safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	reqDelay  time.Duration // client -> target
	respDelay time.Duration // target -> client
	blackhole bool
	conns     map[*link]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// link is one proxied connection.
type link struct {
	client net.Conn
	mu     sync.Mutex
	server net.Conn // set once dialed; nil while dialing
	once   sync.Once
	dead   chan struct{} // closed by close
	// dirty is set when the link dropped bytes in a blackhole: its stream is
	// corrupt and it is reset when the blackhole ends.
	dirty bool
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.dead)
		if tc, ok := l.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as a reset should look
		}
		_ = l.client.Close()
		l.mu.Lock()
		if l.server != nil {
			_ = l.server.Close()
		}
		l.mu.Unlock()
	})
}

// NewProxy listens on 127.0.0.1:0 and forwards every connection to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency sets the delay added to bytes travelling to the target (req)
// and back to the client (resp). A byte is delayed by the latency in force
// when it arrived at the proxy; order is preserved.
func (p *Proxy) SetLatency(req, resp time.Duration) {
	p.mu.Lock()
	p.reqDelay, p.respDelay = req, resp
	p.mu.Unlock()
}

// SetBlackhole turns the partition on or off. While on, connections are
// still accepted but nothing is forwarded in either direction (the bytes are
// dropped, as a partition drops packets); when it ends, every connection that
// lost bytes is reset, since its stream can no longer be decoded.
func (p *Proxy) SetBlackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	var dirty []*link
	if !on {
		for l := range p.conns {
			if l.dirty {
				dirty = append(dirty, l)
			}
		}
	}
	p.mu.Unlock()
	for _, l := range dirty {
		l.close()
	}
}

// ResetAll closes every open connection (with RST towards the client).
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	all := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		all = append(all, l)
	}
	p.mu.Unlock()
	for _, l := range all {
		l.close()
	}
}

// Conns returns the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, resets every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.ResetAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		l := &link{client: c, dead: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(l) })
	}
}

func (p *Proxy) serve(l *link) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	l.mu.Lock()
	select {
	case <-l.dead: // reset while dialing
		l.mu.Unlock()
		_ = s.Close()
		return
	default:
	}
	l.server = s
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, l.client, s, true) })
	wg.Go(func() { p.pipe(l, s, l.client, false) })
	wg.Wait()
}

type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, applying the blackhole and the latency of its
// direction. When src ends, the bytes already read are delivered and then
// the whole link is closed; any write error closes it at once.
func (p *Proxy) pipe(l *link, src, dst net.Conn, req bool) {
	ch := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() { // writer; joined through done
		defer close(done)
		for c := range ch {
			if d := time.Until(c.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-l.dead:
					t.Stop()
				}
			}
			select {
			case <-l.dead: // reset: deliver nothing more
				for range ch {
				}
				return
			default:
			}
			if _, err := dst.Write(c.b); err != nil {
				l.close()
				for range ch { // drain so the reader never blocks
				}
				return
			}
		}
	}()
	defer func() {
		close(ch)
		<-done
		l.close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hole := p.blackhole
			delay := p.respDelay
			if req {
				delay = p.reqDelay
			}
			if hole {
				l.dirty = true
			}
			p.mu.Unlock()
			if !hole {
				select {
				case ch <- chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(delay)}:
				case <-l.dead:
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
