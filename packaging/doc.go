// Package packaging holds what installs tunnel-server and tunnel-agent as
// system services, not code: systemd units, sysusers.d files, the sample
// configs the units expect, and release.sh, which builds the release
// binaries. Its tests check the files against the project's config loader
// and systemd's own tools.
package packaging
