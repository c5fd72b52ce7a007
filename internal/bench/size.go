package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes ParseSize knows, longest first so that "MiB"
// is not read as "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses a byte count: a whole number with an optional unit, such
// as 1GiB, 64MiB, 500MB, 1G (= 1GiB) or 1048576. Units are case-insensitive;
// KiB, MiB, GiB and the single letters K, M, G are powers of 1024, and KB,
// MB, GB powers of 1000.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of bytes with an optional unit, such as 1GiB or 64MiB", s)
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// formatBytes writes n in the largest binary unit that divides it, else in
// MiB with a fraction.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return fmt.Sprintf("%d %s", n/u.mult, u.name)
		}
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// Size is a byte count usable as a command-line flag value (flag.Value and
// pflag.Value) that parses with ParseSize.
type Size int64

// String formats the size; zero is "0" so that flag packages treat it as
// unset in help output.
func (s *Size) String() string {
	if *s == 0 {
		return "0"
	}
	return strings.ReplaceAll(formatBytes(int64(*s)), " ", "")
}

// Set parses v with ParseSize.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// Type names the value in pflag's help.
func (s *Size) Type() string { return "size" }
