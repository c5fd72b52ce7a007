package auth

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "simple", in: "acme-bastion", want: true},
		{name: "one letter", in: "a", want: true},
		{name: "one digit", in: "7", want: true},
		{name: "all allowed characters", in: "Az09._-", want: true},
		{name: "dotted", in: "db.eu-west-1", want: true},
		{name: "63 characters", in: strings.Repeat("a", 63), want: true},
		{name: "empty", in: "", want: false},
		{name: "64 characters", in: strings.Repeat("a", 64), want: false},
		{name: "leading dot", in: ".hidden", want: false},
		{name: "leading dash", in: "-flag", want: false},
		{name: "leading underscore", in: "_x", want: false},
		{name: "space", in: "acme bastion", want: false},
		{name: "slash", in: "a/b", want: false},
		{name: "dot dot", in: "..", want: false},
		{name: "colon", in: "host:5432", want: false},
		{name: "at", in: "user@host", want: false},
		{name: "newline", in: "a\nb", want: false},
		{name: "NUL", in: "a\x00", want: false},
		{name: "non-ASCII letter", in: "bäckerei", want: false},
		{name: "fullwidth digit", in: "\uff11", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidName(tt.in); got != tt.want {
				t.Errorf("ValidName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	if err := CheckName("route", "acme-dw"); err != nil {
		t.Fatal(err)
	}
	err := CheckName("route", "-bad")
	if err == nil || err.Error() != `route name "-bad": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit` {
		t.Fatalf("err = %v", err)
	}
}
