// Package deps pins the project's dependencies while the packages that use
// them are being written. It is removed once every dependency has a user.
package deps

import (
	_ "github.com/hashicorp/yamux"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/quic-go/quic-go"
	_ "github.com/spf13/cobra"
	_ "golang.org/x/crypto/hkdf"
	_ "modernc.org/sqlite"
)
