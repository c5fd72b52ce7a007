package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine records facts about where the benchmark ran.
type Machine struct {
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu,omitempty"` // model name, where the OS tells
	GoVersion  string `json:"go_version"`
	Date       string `json:"date"` // RFC 3339, UTC, at the start
	// LoadStart and LoadEnd are the 1, 5 and 15 minute load averages at the
	// start and the end, where the OS tells (Linux).
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

func machineFacts() Machine {
	return Machine{
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPU:        cpuModel(),
		GoVersion:  runtime.Version(),
		Date:       time.Now().UTC().Format(time.RFC3339),
		LoadStart:  loadAverage(),
	}
}

// line is the machine line under the table.
func (m Machine) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s/%s, %d CPUs (GOMAXPROCS %d)", m.GOOS, m.GOARCH, m.NumCPU, m.GOMAXPROCS)
	if m.CPU != "" {
		fmt.Fprintf(&b, ", %s", m.CPU)
	}
	fmt.Fprintf(&b, ", %s, %s", m.GoVersion, m.Date)
	if m.LoadStart != "" {
		fmt.Fprintf(&b, ", load average %s at start", m.LoadStart)
		if m.LoadEnd != "" {
			fmt.Fprintf(&b, ", %s at end", m.LoadEnd)
		}
	}
	return b.String()
}

// loadAverage returns the three load averages from /proc/loadavg, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
