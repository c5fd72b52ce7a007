package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Reading other processes' memory and CPU time from Linux's /proc.

// readRSS returns the resident set size of process pid in bytes: VmRSS of
// /proc/PID/status (anonymous, file-backed and shared memory resident now;
// for the Go binaries measured here, mostly heap and goroutine stacks).
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(data)
}

// parseVmRSS finds the "VmRSS:   1234 kB" line of a /proc/PID/status.
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: VmRSS line %q: want a number of kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("/proc status: VmRSS line %q: want a number of kB", sc.Text())
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc status: no VmRSS line (a kernel thread, or a process that has exited?)")
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, the kernel's
// clock ticks as user space sees them): 100 on every architecture Linux
// runs Go on.
const userHZ = 100

// readCPU returns the CPU time process pid has used so far, user and
// system, over all its threads, live and exited.
func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime, the 14th and 15th fields, of a
// /proc/PID/stat line. The second field, the command name in parentheses,
// may itself hold blanks and parentheses, so fields are counted from the
// last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name in %q", firstLine(string(stat)))
	}
	// After ") ": field 3 (state) is f[0], so field n is f[n-3].
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("/proc stat: CPU time %q is not a tick count", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuOf sums readCPU over pids.
func cpuOf(pids ...int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		d, err := readCPU(pid)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// Settling: a Go process's RSS moves for a while after its work stops, as
// the garbage collector finishes a cycle and the scavenger returns freed
// pages. settledRSS reads until each process's RSS changes by less than
// settleTolerance between two reads settleEvery apart, for at most
// settleMax, and returns the last reads.
const (
	settleFirst     = time.Second
	settleEvery     = 500 * time.Millisecond
	settleMax       = 10 * time.Second
	settleTolerance = 0.005 // of the RSS, or 64 KiB if more
)

func settledRSS(ctx context.Context, pids ...int) ([]int64, error) {
	read := func() ([]int64, error) {
		rss := make([]int64, len(pids))
		for i, pid := range pids {
			v, err := readRSS(pid)
			if err != nil {
				return nil, err
			}
			rss[i] = v
		}
		return rss, nil
	}
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := wait(settleFirst); err != nil {
		return nil, err
	}
	prev, err := read()
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(settleMax); time.Now().Before(deadline); {
		if err := wait(settleEvery); err != nil {
			return nil, err
		}
		cur, err := read()
		if err != nil {
			return nil, err
		}
		if steady(prev, cur) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// steady reports whether every value of cur is within the tolerance of
// prev's.
func steady(prev, cur []int64) bool {
	for i := range cur {
		tol := max(int64(float64(prev[i])*settleTolerance), 64<<10)
		if d := cur[i] - prev[i]; d > tol || d < -tol {
			return false
		}
	}
	return true
}
