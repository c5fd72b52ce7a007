package config

import (
	"errors"
	"testing"
)

// FuzzParse checks that no document makes the parsers panic, that every
// problem is an *Error, and that what loads validates.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		validAgent, validServer, "", "[", "a = [", "[[targets]]\n[targets.x]\n", "targets = [1, {}]",
		"[agent]\nname.x = 1", "server = { address = 'h:1' }", "[server]\nca = '''\n'''", "\"\\u0000\" = 1",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func() (interface{ Validate() error }, error){
			func() (interface{ Validate() error }, error) { return ParseAgent(AgentFile, data, nil) },
			func() (interface{ Validate() error }, error) { return ParseServer(ServerFile, data, nil) },
		} {
			c, err := parse()
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("not an *Error: %T %v", err, err)
				}
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("loaded but does not validate: %v", err)
			}
		}
	})
}
