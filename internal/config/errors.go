package config

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Every problem found in a config is reported as an *Error
// whose Err is one of these, so callers can tell them apart with errors.Is
// even when several problems are joined into one error.
var (
	// ErrSyntax means the file is not valid TOML.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey means the file sets a key this version does not know. It
	// is never ignored: a misspelled key must not silently fall back to a
	// default.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalid means a key has a value of the wrong type or out of range,
	// or a required key is missing.
	ErrInvalid = errors.New("invalid value")
	// ErrNotFound means no config file was found in the places searched.
	ErrNotFound = errors.New("config file not found")
)

// Error is one problem with a config: where it is, which key, and what is
// wrong. Its message never contains the value of a secret.
//
// Its text has the form
//
//	FILE[:LINE[:COLUMN]]: MESSAGE     a problem in the file
//	VARIABLE: MESSAGE                 a problem in a value from the environment
//
// where MESSAGE names the key, for example
// `tunnel-agent.toml:12: targets[1].address "db": missing port`.
type Error struct {
	// File is the config file name as given to Parse* or Load*; empty when
	// the problem does not come from a file (Validate on a struct built in
	// code) or when Env is set.
	File string
	// Line and Column locate the problem in File, counting from 1; zero when
	// unknown. A missing key has no line, except in a [[targets]] block,
	// where it gets the line of the block's header.
	Line, Column int
	// Env is the environment variable the offending value came from, if any.
	Env string
	// Key is the config key the problem is about, as "section.key"; elements
	// of [[targets]] are numbered from 1 in file order: "targets[2].name".
	// Empty for syntax errors that belong to no key.
	Key string
	// Err is the kind of problem: ErrSyntax, ErrUnknownKey or ErrInvalid.
	Err error

	msg     string   // names Key; never holds a secret
	related []string // other keys the problem involves, to locate it when Key is not set
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		b.WriteString(e.Env)
		b.WriteString(": ")
	case e.File != "":
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":")
				b.WriteString(strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

// Unwrap returns the kind of the problem, for errors.Is.
func (e *Error) Unwrap() error { return e.Err }

// invalid reports a problem with key. shown is how the offending value
// appears in the message (already quoted or parenthesized; empty for none,
// and always empty for secrets); reason says what is wrong.
//
//	invalid("targets[1].address", `"db"`, "missing port")
//	=> targets[1].address "db": missing port
func invalid(key, shown, reason string) *Error {
	msg := key
	if shown != "" {
		msg += " " + shown
	}
	return &Error{Key: key, Err: ErrInvalid, msg: msg + ": " + reason}
}

// sentence reports a problem with key whose message is a whole sentence
// that already names the key.
func sentence(key string, kind error, msg string) *Error {
	return &Error{Key: key, Err: kind, msg: msg}
}

// joinErrors joins errs into one error, nil when there are none.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// quote shows a string value in a message.
func quote(s string) string { return strconv.Quote(s) }
