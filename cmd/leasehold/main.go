// Command leasehold runs any command only while it leads, runs a command
// under a lock, and shows, watches, releases and hands off Leases. Installed
// as kubectl-lease it is also the kubectl plugin `kubectl lease`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGHUP (a closed terminal) ends leasehold as SIGTERM does: COMMAND
	// gets SIGTERM and its grace, and the lease is released.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := Execute(ctx, os.Args[1:], IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Notify: notify})
	stop()
	os.Exit(code)
}

// notify relays sig to c until the returned function is called.
func notify(c chan<- os.Signal, sig ...os.Signal) func() {
	signal.Notify(c, sig...)
	return func() { signal.Stop(c) }
}
