// Command worker is the workload of the end-to-end tests' image, at
// /app/worker and /app/migrate. As worker (the child of `leasehold run`) it
// prints a "start" line, then a "stop" line when SIGTERM or SIGINT arrives,
// and exits. As migrate (the child of `leasehold lock`) it prints "start",
// works MIGRATE_SECONDS (default 3), prints "end" and exits. Each line is
// JSON with the pod's name, the fencing token, the shard (under `leasehold
// run --shards`) and CLOCK_MONOTONIC in nanoseconds, which every process on
// the machine shares.
package main

import (
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Line is one line of the worker's output.
type Line struct {
	Ev    string `json:"ev"`
	Pod   string `json:"pod"`
	Token string `json:"token"`
	Mono  int64  `json:"mono"`
	// Shard is LEASEHOLD_SHARD, set for a child of `leasehold run --shards`.
	Shard string `json:"shard,omitempty"`
}

func emit(ev string) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	b, _ := json.Marshal(Line{Ev: ev, Pod: os.Getenv("POD_NAME"), Token: os.Getenv("LEASEHOLD_TOKEN"), Mono: ts.Nano(), Shard: os.Getenv("LEASEHOLD_SHARD")})
	os.Stdout.Write(append(b, '\n'))
}

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	emit("start")
	if filepath.Base(os.Args[0]) == "migrate" {
		secs, err := strconv.Atoi(os.Getenv("MIGRATE_SECONDS"))
		if err != nil {
			secs = 3
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
			emit("end")
		case <-sigs:
			emit("stop")
			os.Exit(1)
		}
		return
	}
	<-sigs
	emit("stop")
}
