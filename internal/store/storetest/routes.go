package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/store"
)

func testRoutes(t *testing.T, o opener) {
	t.Run("EmptyStore", func(t *testing.T) {
		s := newStore(t, o)
		routes, err := s.Routes(t.Context())
		if err != nil {
			t.Fatalf("Routes: %v", err)
		}
		if len(routes) != 0 {
			t.Errorf("Routes = %v, want none", routes)
		}
	})

	t.Run("AddAndGet", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		want := store.Route{
			Name:        "warehouse",
			Agent:       "acme",
			Target:      "pg-main",
			Listen:      "127.0.0.1:15432",
			Protocol:    "postgres",
			Default:     true,
			Allow:       []string{"192.168.0.0/16", "10.0.0.0/8", "2001:db8::/32", "10.1.2.3/32"},
			MaxSessions: 7,
			CreatedAt:   time.Date(2023, 1, 2, 3, 4, 5, 600000000, time.FixedZone("EST", -5*60*60)),
		}
		addRoute(t, s, want)
		got, err := s.Route(t.Context(), want.Name)
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		checkRoute(t, got, want)
	})

	t.Run("Defaults", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		before := time.Now()
		addRoute(t, s, route("warehouse", "acme", ":15432"))
		after := time.Now()
		got, err := s.Route(t.Context(), "warehouse")
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		if got.Protocol != store.ProtocolTCP {
			t.Errorf("Protocol = %q, want %q", got.Protocol, store.ProtocolTCP)
		}
		if len(got.Allow) != 0 {
			t.Errorf("Allow = %q, want empty", got.Allow)
		}
		if got.MaxSessions != 0 {
			t.Errorf("MaxSessions = %d, want 0", got.MaxSessions)
		}
		checkRecent(t, "CreatedAt", got.CreatedAt, before, after)
	})

	t.Run("SortedByName", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addAgent(t, s, "beta")
		// Allowlists on several routes check that Routes gives each route
		// its own entries.
		want := []store.Route{
			{Name: "B", Agent: "beta", Target: "t1", Listen: ":1001", Allow: []string{"10.0.0.0/8"}},
			{Name: "a", Agent: "acme", Target: "t2", Listen: ":1002"},
			{Name: "a-2", Agent: "beta", Target: "t3", Listen: ":1003", Allow: []string{"192.0.2.0/24", "198.51.100.0/24"}},
			{Name: "c", Agent: "acme", Target: "t4", Listen: ":1004", Allow: []string{"203.0.113.7/32"}},
		}
		for _, i := range []int{2, 0, 3, 1} {
			addRoute(t, s, want[i])
		}
		got, err := s.Routes(t.Context())
		if err != nil {
			t.Fatalf("Routes: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("Routes returned %d routes, want %d", len(got), len(want))
		}
		for i := range want {
			want[i].Protocol = store.ProtocolTCP
			want[i].CreatedAt = got[i].CreatedAt // checked in Defaults
			checkRoute(t, got[i], want[i])
		}
	})

	t.Run("AddErrors", func(t *testing.T) {
		tests := []struct {
			name  string
			route store.Route
			err   error
			parts []string // what the message must name
		}{
			{"SameName", route("existing", "acme", ":2000"), store.ErrExists, []string{`"existing"`}},
			{"SameListen", route("new", "acme", "127.0.0.1:1000"), store.ErrExists, []string{`"new"`, `"127.0.0.1:1000"`, `"existing"`}},
			{"UnknownAgent", route("new", "ghost", ":2000"), store.ErrNotFound, []string{`agent "ghost"`}},
			{"AgentNameCase", route("new", "ACME", ":2000"), store.ErrNotFound, []string{`agent "ACME"`}},
			{"EmptyName", route("", "acme", ":2000"), store.ErrInvalid, nil},
			{"EmptyAgent", route("new", "", ":2000"), store.ErrInvalid, nil},
			{"EmptyTarget", store.Route{Name: "new", Agent: "acme", Listen: ":2000"}, store.ErrInvalid, []string{"target"}},
			{"ListenWithoutPort", route("new", "acme", "127.0.0.1"), store.ErrInvalid, []string{"127.0.0.1"}},
			{"AllowNotCIDR", store.Route{Name: "new", Agent: "acme", Target: "t", Listen: ":2000", Allow: []string{"10.0.0.0/8", "10.0.0"}}, store.ErrInvalid, []string{`"10.0.0"`}},
			{"AllowBareAddress", store.Route{Name: "new", Agent: "acme", Target: "t", Listen: ":2000", Allow: []string{"10.0.0.1"}}, store.ErrInvalid, []string{`"10.0.0.1"`}},
			{"NegativeMaxSessions", store.Route{Name: "new", Agent: "acme", Target: "t", Listen: ":2000", MaxSessions: -1}, store.ErrInvalid, nil},
			{"UnknownProtocol", store.Route{Name: "new", Agent: "acme", Target: "t", Listen: ":2000", Protocol: "http"}, store.ErrInvalid, []string{`"http"`}},
			{"PostgresJoinsTCP", pgRoute("new", "127.0.0.1:1000", false), store.ErrExists, []string{`"new"`, `"existing"`, "postgres"}},
			{"TCPJoinsPostgres", route("new", "acme", "127.0.0.1:1001"), store.ErrExists, []string{`"new"`, `"pg-default"`}},
			{"MySQLJoinsPostgres", store.Route{Name: "new", Agent: "acme", Target: "t", Listen: "127.0.0.1:1001", Protocol: store.ProtocolMySQL},
				store.ErrExists, []string{`"pg-default"`}},
			{"SecondDefault", pgRoute("new", "127.0.0.1:1001", true), store.ErrExists, []string{"default", `"pg-default"`}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := newStore(t, o)
				addAgent(t, s, "acme")
				existing := route("existing", "acme", "127.0.0.1:1000")
				existing.Allow = []string{"10.0.0.0/8"}
				addRoute(t, s, existing)
				addRoute(t, s, pgRoute("pg-default", "127.0.0.1:1001", true))
				before, err := s.Routes(t.Context())
				if err != nil {
					t.Fatalf("Routes: %v", err)
				}

				checkErr(t, s.AddRoute(t.Context(), tt.route), tt.err, tt.parts...)

				// Nothing of the refused route may be left behind.
				after, err := s.Routes(t.Context())
				if err != nil {
					t.Fatalf("Routes: %v", err)
				}
				if len(after) != len(before) {
					t.Fatalf("Routes = %+v after a refused AddRoute, want %+v", after, before)
				}
				for i := range before {
					checkRoute(t, after[i], before[i])
				}
			})
		}
	})

	t.Run("SharedPostgresAddress", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addRoute(t, s, pgRoute("a", ":5432", true))
		addRoute(t, s, pgRoute("b", ":5432", false))
		addRoute(t, s, pgRoute("c", ":5432", false))
		routes, err := s.Routes(t.Context())
		if err != nil {
			t.Fatalf("Routes: %v", err)
		}
		var defaults []string
		for _, r := range routes {
			if r.Default {
				defaults = append(defaults, r.Name)
			}
		}
		if !slices.Equal(defaults, []string{"a"}) {
			t.Errorf("defaults = %q, want [a]", defaults)
		}
		// Once the default is gone, another route may take its place.
		if err := s.RemoveRoute(t.Context(), "a"); err != nil {
			t.Fatalf("RemoveRoute: %v", err)
		}
		addRoute(t, s, pgRoute("d", ":5432", true))
		checkRouteNames(t, s, "b", "c", "d")
	})

	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addRoute(t, s, route("warehouse", "acme", ":15432"))
		_, err := s.Route(t.Context(), "Warehouse")
		checkErr(t, err, store.ErrNotFound, `route "Warehouse"`)
	})

	t.Run("NamesAreCaseSensitive", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		addRoute(t, s, route("warehouse", "acme", ":15432"))
		addRoute(t, s, route("Warehouse", "acme", ":15433"))
		checkRouteNames(t, s, "Warehouse", "warehouse")
	})

	t.Run("DisabledAgent", func(t *testing.T) {
		// Disabling is about connections; routes of a disabled agent
		// stay configurable so it can be re-enabled as it was.
		s := newStore(t, o)
		addAgent(t, s, "acme")
		if err := s.SetAgentDisabled(t.Context(), "acme", true); err != nil {
			t.Fatalf("SetAgentDisabled: %v", err)
		}
		addRoute(t, s, route("warehouse", "acme", ":15432"))
	})

	t.Run("Remove", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		first := route("warehouse", "acme", ":15432")
		first.Allow = []string{"10.0.0.0/8", "192.168.0.0/16"}
		addRoute(t, s, first)
		addRoute(t, s, route("other", "acme", ":15433"))

		if err := s.RemoveRoute(t.Context(), "warehouse"); err != nil {
			t.Fatalf("RemoveRoute: %v", err)
		}
		_, err := s.Route(t.Context(), "warehouse")
		checkErr(t, err, store.ErrNotFound)
		checkRouteNames(t, s, "other")
		checkErr(t, s.RemoveRoute(t.Context(), "warehouse"), store.ErrNotFound, `route "warehouse"`)

		// Name and listen address are free again, and the old allowlist
		// is gone with the old route.
		second := route("warehouse", "acme", ":15432")
		second.Allow = []string{"203.0.113.0/24"}
		addRoute(t, s, second)
		got, err := s.Route(t.Context(), "warehouse")
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		if !slices.Equal(got.Allow, second.Allow) {
			t.Errorf("Allow = %q, want %q", got.Allow, second.Allow)
		}
	})

	t.Run("ReturnedAllowIsACopy", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		r := route("warehouse", "acme", ":15432")
		r.Allow = []string{"10.0.0.0/8"}
		addRoute(t, s, r)
		r.Allow[0] = "0.0.0.0/0"
		got, err := s.Route(t.Context(), "warehouse")
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		got.Allow[0] = "0.0.0.0/0"
		again, err := s.Route(t.Context(), "warehouse")
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		if !slices.Equal(again.Allow, []string{"10.0.0.0/8"}) {
			t.Errorf("Allow = %q: the store shares memory with its callers", again.Allow)
		}
	})
}

// checkRoute fails unless got matches want, CreatedAt within timePrecision
// and an empty Allow equal to a nil one.
func checkRoute(t *testing.T, got, want store.Route) {
	t.Helper()
	if got.Name != want.Name || got.Agent != want.Agent || got.Target != want.Target ||
		got.Listen != want.Listen || got.Protocol != want.Protocol || got.Default != want.Default || got.MaxSessions != want.MaxSessions ||
		!slices.Equal(got.Allow, want.Allow) {
		t.Errorf("route = %+v, want %+v", got, want)
	}
	checkTime(t, "route "+want.Name+" CreatedAt", got.CreatedAt, want.CreatedAt)
}

// checkRouteNames fails unless Routes returns exactly names, in that order.
func checkRouteNames(t *testing.T, s store.Store, names ...string) {
	t.Helper()
	routes, err := s.Routes(t.Context())
	if err != nil {
		t.Fatalf("Routes: %v", err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.Name)
	}
	if !slices.Equal(got, names) {
		t.Errorf("Routes = %q, want %q", got, names)
	}
}
