package config

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

func TestEnvNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []EnvVar
		want []string
	}{
		{
			name: "agent",
			got:  AgentEnv(),
			want: []string{
				"TUNNEL_AGENT_SERVER_ADDRESS=server.address",
				"TUNNEL_AGENT_SERVER_CA=server.ca",
				"TUNNEL_AGENT_SERVER_SERVER_NAME=server.server_name",
				"TUNNEL_AGENT_SERVER_TRANSPORT=server.transport",
				"TUNNEL_AGENT_SERVER_PROXY=server.proxy",
				"TUNNEL_AGENT_AGENT_NAME=agent.name",
				"TUNNEL_AGENT_AGENT_KEY=agent.key",
				"TUNNEL_AGENT_AGENT_MAX_SESSIONS=agent.max_sessions",
				"TUNNEL_AGENT_AGENT_DIAL_TIMEOUT=agent.dial_timeout",
				"TUNNEL_AGENT_AGENT_HANDSHAKE_TIMEOUT=agent.handshake_timeout",
				"TUNNEL_AGENT_AGENT_HALF_CLOSE_TIMEOUT=agent.half_close_timeout",
				"TUNNEL_AGENT_AGENT_DRAIN_TIMEOUT=agent.drain_timeout",
				"TUNNEL_AGENT_AGENT_MAX_HEADER_SIZE=agent.max_header_size",
				"TUNNEL_AGENT_AGENT_METRICS_LISTEN=agent.metrics_listen",
			},
		},
		{
			name: "server",
			got:  ServerEnv(),
			want: []string{
				"TUNNEL_SERVER_SERVER_LISTEN=server.listen",
				"TUNNEL_SERVER_SERVER_PUBLIC_ADDRESS=server.public_address",
				"TUNNEL_SERVER_SERVER_CERT=server.cert",
				"TUNNEL_SERVER_SERVER_KEY=server.key",
				"TUNNEL_SERVER_SERVER_CA=server.ca",
				"TUNNEL_SERVER_SERVER_DATABASE=server.database",
				"TUNNEL_SERVER_ADMIN_LISTEN=admin.listen",
				"TUNNEL_SERVER_ADMIN_TOKEN_FILE=admin.token_file",
				"TUNNEL_SERVER_POSTGRES_DOMAIN=postgres.domain",
				"TUNNEL_SERVER_POSTGRES_CERT=postgres.cert",
				"TUNNEL_SERVER_POSTGRES_KEY=postgres.key",
				"TUNNEL_SERVER_LIMITS_HANDSHAKE_TIMEOUT=limits.handshake_timeout",
				"TUNNEL_SERVER_LIMITS_OPEN_TIMEOUT=limits.open_timeout",
				"TUNNEL_SERVER_LIMITS_MAX_SESSIONS_PER_AGENT=limits.max_sessions_per_agent",
				"TUNNEL_SERVER_LIMITS_MAX_HEADER_SIZE=limits.max_header_size",
				"TUNNEL_SERVER_LIMITS_HEARTBEAT_INTERVAL=limits.heartbeat_interval",
				"TUNNEL_SERVER_LIMITS_HEARTBEAT_TIMEOUT=limits.heartbeat_timeout",
				"TUNNEL_SERVER_LIMITS_HALF_CLOSE_TIMEOUT=limits.half_close_timeout",
				"TUNNEL_SERVER_LIMITS_DRAIN_TIMEOUT=limits.drain_timeout",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, v := range tt.got {
				got = append(got, v.Name+"="+v.Key)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestEnvSetsEveryKey sets each variable and checks that its field, and
// only its field, changed: every key type can be set from text.
func TestEnvSetsEveryKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		cfg    func() any
		prefix string
	}{
		{"agent", func() any { return new(Agent) }, agentEnvPrefix},
		{"server", func() any { return new(Server) }, serverEnvPrefix},
	} {
		for _, f := range envFields(reflect.TypeOf(tt.cfg()).Elem(), tt.prefix) {
			t.Run(f.Name, func(t *testing.T) {
				t.Parallel()
				cfg := tt.cfg()
				v := reflect.ValueOf(cfg).Elem()
				var value string
				switch field := v.FieldByIndex(f.index); {
				case isText(field.Type()):
					value = "42s"
				case field.Kind() == reflect.Int:
					value = "42"
				default:
					value = "v42"
				}
				from, errs := applyEnv(cfg, tt.prefix, envMap(map[string]string{f.Name: value}))
				if len(errs) > 0 {
					t.Fatal(joinErrors(errs))
				}
				if from[f.Key] != f.Name || len(from) != 1 {
					t.Errorf("from = %v", from)
				}
				field := v.FieldByIndex(f.index)
				got := fmt.Sprint(field.Interface())
				if field.Kind() == reflect.String {
					got = field.String() // a Secret prints as [redacted]
				}
				if got != value {
					t.Errorf("field = %q, want %q", got, value)
				}
				field.Set(reflect.Zero(field.Type()))
				if !v.IsZero() {
					t.Errorf("another field changed: %+v", cfg)
				}
			})
		}
	}
}

func TestEnvNil(t *testing.T) {
	t.Parallel()
	var c Agent
	from, errs := applyEnv(&c, agentEnvPrefix, nil)
	if len(from) != 0 || len(errs) != 0 || !reflect.ValueOf(c).IsZero() {
		t.Errorf("nil env changed something: %v %v %+v", from, errs, c)
	}
}
