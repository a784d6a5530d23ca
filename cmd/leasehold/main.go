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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Execute(ctx, os.Args[1:], IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
