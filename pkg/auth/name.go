package auth

import "fmt"

// MaxNameLen is the longest valid agent, route or target name. It matches the
// length limit of a DNS label, so a name can also be used as one.
const MaxNameLen = 63

// ValidName reports whether s is a valid agent, route or target name: 1 to
// [MaxNameLen] bytes of ASCII letters, digits, '.', '_' and '-', starting with
// a letter or a digit.
//
// Names end up in log lines, file names, certificate subjects and protocol
// messages, so the alphabet is kept free of anything that needs quoting.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckName returns nil when s is a [ValidName], else an error that names
// the kind of name ("agent", "route", "target") and states the rule.
func CheckName(kind, s string) error {
	if ValidName(s) {
		return nil
	}
	return fmt.Errorf("%s name %q: use 1-%d letters, digits, '.', '_' or '-', starting with a letter or digit",
		kind, truncate(s, MaxNameLen+1), MaxNameLen)
}
