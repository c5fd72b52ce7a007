package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// readFile reads a config file of at most maxFileSize bytes and returns its
// contents and absolute path.
func readFile(path string) (data []byte, abs string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, "", fmt.Errorf("read config %s: larger than %d bytes; is it the right file?", path, maxFileSize)
	}
	abs, err = filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("read config %s: %w", path, err)
	}
	return data, abs, nil
}

// locate completes validation errors with where the bad value came from:
// the environment variable that set it (from maps keys to variables), or
// the file and, when the key is in it, the line. An error involving
// several keys is located at the first one that is set.
func locate(errs []*Error, file string, idx docIndex, from map[string]string) error {
	for _, e := range errs {
		if e.Env != "" {
			continue
		}
		for _, key := range append([]string{e.Key}, e.related...) {
			if v, ok := from[key]; ok {
				e.Env = v
				break
			}
			if e.Line = idx.line(key); e.Line > 0 {
				break
			}
		}
		if e.Env == "" {
			e.File = file
		}
	}
	return joinErrors(errs)
}

// absPath returns path made absolute, or path itself if that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
