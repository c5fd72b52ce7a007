//go:build !unix

package blackhole

import "errors"

// bind is not written for this system: Open and OpenRefused fail here.
func bind(bool) (*Port, error) {
	return nil, errors.New("blackhole: needs a Unix system")
}
