package bench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   int64
		err    bool
	}{
		{"real", "Name:\ttunnel-server\nVmPeak:\t 1262688 kB\nVmHWM:\t   20000 kB\nVmRSS:\t   12345 kB\nRssAnon:\t    8000 kB\n", 12345 << 10, false},
		{"zero", "VmRSS:\t0 kB\n", 0, false},
		{"missing", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0, true},
		{"other unit", "VmRSS:\t12 MB\n", 0, true},
		{"not a number", "VmRSS:\tlots kB\n", 0, true},
		{"negative", "VmRSS:\t-5 kB\n", 0, true},
		{"a look-alike first", "VmRSSx:\t5 kB\nVmRSS:\t7 kB\n", 7 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tt.status))
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseVmRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	// Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	tests := []struct {
		name string
		stat string
		want time.Duration
		err  bool
	}{
		{"plain", "4242 (tunnel-server) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 7 3 20 0 9 0 1234 1000000 3000 18446744073709551615",
			3800 * time.Millisecond, false},
		{"name with blanks and parentheses", "77 (a b) (c)) R 1 77 77 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0",
			30 * time.Millisecond, false},
		{"children not counted", "1 (x) S 0 0 0 0 0 0 0 0 0 0 0 0 999 999", 0, false},
		{"too short", "1 (x) S 0 0 0 0 0 0 0 0 0 0 5", 0, true},
		{"no name", "1 x S 0 0 0", 0, true},
		{"not a number", "1 (x) S 0 0 0 0 0 0 0 0 0 0 a 2", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestReadOwnProcess reads this process's figures from the real /proc:
// the RSS is at least what a touched allocation holds, and CPU time grows
// when this process spins.
func TestReadOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	pid := os.Getpid()
	block := make([]byte, 32<<20)
	for i := range block {
		block[i] = byte(i)
	}
	rss, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < int64(len(block)) {
		t.Errorf("RSS %d bytes, less than the %d just touched", rss, len(block))
	}
	runtime.KeepAlive(block)

	before, err := readCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Spin until /proc shows at least two ticks more (bounded).
	x := 0
	deadline := time.Now().Add(10 * time.Second)
	var after time.Duration
	for time.Now().Before(deadline) {
		for i := range 1 << 20 {
			x += i
		}
		if after, err = readCPU(pid); err != nil {
			t.Fatal(err)
		}
		if after-before >= 2*time.Second/userHZ {
			break
		}
	}
	if after-before < 2*time.Second/userHZ {
		t.Errorf("CPU time went from %v to %v in 10 s of spinning", before, after)
	}
	_ = x
}

func TestSteady(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur []int64
		want      bool
	}{
		{"same", []int64{100 << 20}, []int64{100 << 20}, true},
		{"small move", []int64{100 << 20}, []int64{100<<20 + 100<<10}, true},
		{"large move", []int64{100 << 20}, []int64{101 << 20}, false},
		{"small process, 64 KiB floor", []int64{1 << 20}, []int64{1<<20 + 60<<10}, true},
		{"one of two moved", []int64{10 << 20, 10 << 20}, []int64{10 << 20, 12 << 20}, false},
		{"shrinking", []int64{100 << 20}, []int64{98 << 20}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := steady(tt.prev, tt.cur); got != tt.want {
				t.Errorf("steady(%v, %v) = %v, want %v", tt.prev, tt.cur, got, tt.want)
			}
		})
	}
}
