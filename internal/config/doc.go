// Package config loads, validates and writes the configs of tunnel-agent
// (tunnel-agent.toml, type Agent) and tunnel-server (tunnel-server.toml,
// type Server).
//
// It is for turning a file plus the environment into a validated struct,
// finding that file, and writing fresh ones for `tunnel-server init` and
// `agent add`. It is not for using the config: it opens no connection,
// reads no certificate or key file named by the server config, and does
// not warn about legal but odd settings (an agent without targets); that is
// the caller's business.
//
// # Loading
//
// LoadAgent and LoadServer read a file, decode it strictly, apply
// environment overrides, fill in defaults and validate. The zero value of
// every optional key means its default. Every problem is reported at once,
// as *Error values joined with errors.Join, one per line:
//
//	tunnel-agent.toml:3:12: invalid TOML: expected newline but got U+0022 '"'
//	tunnel-agent.toml:7: unknown key "targets[1].adress" (did you mean "address"?)
//	tunnel-agent.toml:12: targets[2].name "warehouse": duplicate (also targets[1])
//	tunnel-agent.toml: agent.key: missing
//	TUNNEL_AGENT_AGENT_MAX_SESSIONS: agent.max_sessions "ten": not an integer
//
// An unknown key is always an error, never ignored: a misspelled key must
// not silently fall back to a default. Keys are matched exactly (lower
// case). Elements of [[targets]] are numbered from 1 in file order. No
// message ever contains the agent's key; the Secret type keeps it out of
// fmt, JSON, TOML and slog output too.
//
// Relative paths in the server config (cert, key, ca, database,
// token_file, and a "unix:" admin socket) are relative to the directory
// of the config file, including paths set from the environment; loading
// makes them absolute.
//
// # Environment
//
// After the file is read, environment variables override single keys of
// its sections. The variable for a key is the prefix, the section and the
// key, upper-cased and joined with underscores:
//
//	TUNNEL_AGENT_  + SECTION + _ + KEY   e.g. TUNNEL_AGENT_SERVER_ADDRESS  overrides [server] address
//	TUNNEL_SERVER_ + SECTION + _ + KEY   e.g. TUNNEL_SERVER_ADMIN_LISTEN   overrides [admin] listen
//
// so TUNNEL_AGENT_AGENT_KEY sets the agent's key and
// TUNNEL_SERVER_LIMITS_OPEN_TIMEOUT the open timeout. Durations take the
// same form as in the file ("10s"). An empty variable counts as unset.
// Lists ([[targets]]) cannot be set from the environment. The names are
// derived from the struct tags, so they cannot drift from the file format;
// AgentEnv and ServerEnv list them. A bad value is an error naming the
// variable.
//
// The agent's way to the server also follows the usual proxy variables:
// when [server] proxy is empty, HTTPS_PROXY (or https_proxy) names an HTTP
// proxy for it unless NO_PROXY (or no_proxy) excludes the server's address
// (AgentServer.ResolveProxy; ParseAgent sets Agent.ServerProxy).
//
// # Finding the file
//
// Find (and FindAgent, FindServer) returns the --config path if given,
// else the first existing of: the executable's directory,
// $XDG_CONFIG_HOME (or ~/.config), /etc.
//
// # Writing
//
// RenderAgent and RenderServer produce commented configs that load as they
// are; WriteAgentFile and WriteServerFile write them to new files with mode
// 0600 and never overwrite an existing file.
package config
