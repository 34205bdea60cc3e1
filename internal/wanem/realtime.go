//go:build linux

package wanem

import (
	"context"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Realtime priorities: the loops above everything else of the process.
const (
	loopPriority    = 10
	processPriority = 1
)

// KeepProcessRealtime moves every thread of the process to SCHED_FIFO at a
// low priority (below the loops'), and keeps doing so every interval until
// ctx ends, so that threads the Go runtime creates later follow. Processes
// the program starts are not affected (the policy resets on fork).
//
// Why: a loop is preempted by the Go runtime every 10 ms of running, and
// resuming it needs another of the process's threads to hand it a P; on a
// busy machine a thread of normal priority can wait tens of milliseconds
// for a CPU. Use it only in a process that does little but emulate (the
// lab runner, the emulator's tests): a busy real-time process starves the
// machine. Needs root; without it nothing changes.
func KeepProcessRealtime(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		raiseThreads()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func raiseThreads() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, e := range tasks {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if a, err := unix.SchedGetAttr(tid, 0); err != nil || a.Policy == unix.SCHED_FIFO {
			continue
		}
		_ = unix.SchedSetAttr(tid, &unix.SchedAttr{
			Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: processPriority,
			Flags: unix.SCHED_FLAG_RESET_ON_FORK,
		}, 0)
	}
}
