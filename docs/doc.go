// Package docs holds the project's documentation in Markdown, not code. Its
// tests keep docs/OPERATIONS.md true to the code: every exit code, refuse
// code, reply code, front-door class, SQLSTATE, MySQL error and top-level
// command has an entry, and every message quoted in its tables still
// occurs in the Go source.
package docs
