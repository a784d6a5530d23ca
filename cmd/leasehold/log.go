package main

import (
	"bytes"
	"flag"
	"io"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// Logging. run and lock write their own messages to stderr, each line
// starting with a UTC timestamp; COMMAND's output is passed through
// untouched. -v (as kubectl's) sets the verbosity of klog, where client-go
// logs its requests (-v 6) and the elector or lock its state changes (-v 1)
// and retries (-v 3).

// addVerbosityFlag adds kubectl's -v / --v to fs: klog's verbosity.
func addVerbosityFlag(fs *pflag.FlagSet) {
	gfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gfs)
	v := pflag.PFlagFromGoFlag(gfs.Lookup("v")) // -v and --v, as in kubectl
	v.Usage = "log verbosity, as kubectl's: 1 state changes of the election or lock, 3 retries, 6 API requests, 8 request bodies"
	fs.AddFlag(v)
}

// logging returns a copy of a for run and lock: its stderr starts every
// line with a timestamp. Give COMMAND a.io.child(), the streams as they were.
func (a *app) logging() *app {
	c := *a
	c.io.Err = &stampWriter{w: a.io.Err, now: time.Now}
	return &c
}

// child returns the streams without timestamps, for a child process: its
// output passes through untouched, to the very file leasehold was given.
func (s IO) child() IO {
	if sw, ok := s.Err.(*stampWriter); ok {
		s.Err = sw.w
	}
	return s
}

// logger is the logr.Logger for the elector or lock of run and lock: klog,
// one verbosity level down, so that their state changes show with -v 1.
func (a *app) logger() logr.Logger { return klog.Background().V(1) }

// stampWriter starts every line written through it with a timestamp (the
// format of watch's lines). It is safe for concurrent use; a line written
// in several pieces gets one stamp.
type stampWriter struct {
	w   io.Writer
	now func() time.Time

	mu      sync.Mutex
	midLine bool // the last write did not end a line
}

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	for rest := p; len(rest) > 0; {
		if !s.midLine {
			out = append(out, watchStamp(s.now())+"  "...)
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		out = append(out, line...)
		rest = rest[len(line):]
		s.midLine = line[len(line)-1] != '\n'
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
