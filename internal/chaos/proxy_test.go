package chaos

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c); _ = c.Close() })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads it back, failing after timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return 0, err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return 0, err
	}
	if string(buf) != msg {
		return 0, io.ErrUnexpectedEOF
	}
	return time.Since(start), nil
}

func TestProxyForwards(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	for _, msg := range []string{"hello", "world"} {
		if _, err := roundTrip(c, msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func TestProxyLatencyPerDirection(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ req, resp time.Duration }{
		{150 * time.Millisecond, 0},
		{0, 150 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
	} {
		p.SetLatency(tc.req, tc.resp)
		took, err := roundTrip(c, "ping", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.req + tc.resp; took < want {
			t.Errorf("latency %v/%v: round trip took %v, want at least %v", tc.req, tc.resp, took, want)
		}
	}
	p.SetLatency(0, 0)
	if took, err := roundTrip(c, "fast", 5*time.Second); err != nil || took > time.Second {
		t.Errorf("after latency removed: %v, %v", took, err)
	}
}

func TestProxyBlackholeAndHeal(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetBlackhole(true)
	if _, err := roundTrip(c, "lost", 300*time.Millisecond); err == nil {
		t.Fatal("a reply came through the blackhole")
	}
	// New connections are accepted but get nothing either.
	c2 := dial(t, p)
	if _, err := roundTrip(c2, "lost too", 300*time.Millisecond); err == nil {
		t.Fatal("a new connection got a reply through the blackhole")
	}
	p.SetBlackhole(false)
	// Connections that lost bytes are reset.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 16)); err == nil || isTimeout(err) {
		t.Fatalf("read on a connection that lost bytes: %v, want a reset", err)
	}
	c3 := dial(t, p)
	if _, err := roundTrip(c3, "after", 5*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestProxyResetAll(t *testing.T) {
	p := newTestProxy(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(0, 10*time.Second) // a reply stuck in the proxy must not hold up the reset
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	p.ResetAll()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after reset: %v, want a reset", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("reset took %v", time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Conns(); n != 0 {
		t.Errorf("%d connections left after reset", n)
	}
	p.SetLatency(0, 0)
	if _, err := roundTrip(dial(t, p), "z", 5*time.Second); err != nil {
		t.Fatalf("new connection after reset: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
