#!/usr/bin/env bash
# Builds the release binaries of tunnel-server and tunnel-agent into dist/,
# for every platform we ship, with the version compiled in, and writes
# dist/SHA256SUMS. `just release` runs this; it needs only Go and git.
#
#   packaging/release.sh                 # all platforms
#   packaging/release.sh linux/amd64     # only the ones named
#
# The version is `git describe --tags --always --dirty` (VERSION overrides
# it), the commit `git rev-parse HEAD`, and the build date now, or
# SOURCE_DATE_EPOCH when set (for reproducible builds). Binaries are static
# (CGO_ENABLED=0) and built with -trimpath, so they carry no path of this
# machine. Output: dist/tunnel-{server,agent}-OS-ARCH[.exe].
set -euo pipefail
cd "$(dirname "$0")/.."

platforms=("$@")
if [ ${#platforms[@]} -eq 0 ]; then
  platforms=(linux/amd64 linux/arm64 darwin/arm64 windows/amd64)
fi

version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=$(git rev-parse HEAD 2>/dev/null || true)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

pkg=github.com/tunnelrelay/tunnel/internal/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit -X $pkg.Date=$date"

rm -rf dist
mkdir -p dist
echo "release $version (commit ${commit:-unknown}, built $date)"
for platform in "${platforms[@]}"; do
  goos=${platform%/*}
  goarch=${platform#*/}
  ext=""
  if [ "$goos" = windows ]; then ext=.exe; fi
  for bin in tunnel-server tunnel-agent; do
    out="dist/$bin-$goos-$goarch$ext"
    CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch \
      go build -trimpath -ldflags "$ldflags" -o "$out" "./cmd/$bin"
    echo "  $out"
  done
done

# sha256sum on Linux, shasum on macOS; both write the same format.
(
  cd dist
  if command -v sha256sum >/dev/null; then
    sha256sum tunnel-* >SHA256SUMS
  else
    shasum -a 256 tunnel-* >SHA256SUMS
  fi
)
echo "  dist/SHA256SUMS"
