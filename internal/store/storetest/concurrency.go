package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tunnelrelay/tunnel/internal/store"
)

// writers is how many goroutines the concurrency tests run at once.
const writers = 20

// runWriters runs fn(i) for i in [0, writers) concurrently and returns their
// errors by i.
func runWriters(fn func(i int) error) []error {
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errs
}

func testConcurrency(t *testing.T, o opener) {
	t.Run("DistinctWriters", func(t *testing.T) {
		s := newStore(t, o)
		errs := runWriters(func(i int) error {
			agent := fmt.Sprintf("agent-%02d", i)
			if err := s.AddAgent(t.Context(), store.Agent{Name: agent, Fingerprint: fingerprint}); err != nil {
				return err
			}
			return s.AddRoute(t.Context(), route(fmt.Sprintf("route-%02d", i), agent, fmt.Sprintf(":%d", 20000+i)))
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		agents, err := s.Agents(t.Context())
		if err != nil {
			t.Fatalf("Agents: %v", err)
		}
		routes, err := s.Routes(t.Context())
		if err != nil {
			t.Fatalf("Routes: %v", err)
		}
		if len(agents) != writers || len(routes) != writers {
			t.Errorf("%d agents and %d routes, want %d of each", len(agents), len(routes), writers)
		}
	})

	t.Run("SameAgentName", func(t *testing.T) {
		s := newStore(t, o)
		errs := runWriters(func(i int) error {
			return s.AddAgent(t.Context(), store.Agent{Name: "acme", Fingerprint: fmt.Sprintf("sha256:%02d", i)})
		})
		checkOneWinner(t, errs, store.ErrExists)
	})

	t.Run("SameListen", func(t *testing.T) {
		s := newStore(t, o)
		addAgent(t, s, "acme")
		errs := runWriters(func(i int) error {
			return s.AddRoute(t.Context(), route(fmt.Sprintf("route-%02d", i), "acme", ":15432"))
		})
		checkOneWinner(t, errs, store.ErrExists)
		checkRoutesCount(t, s, 1)
	})

	t.Run("RemoveAgentRacesAddRoute", func(t *testing.T) {
		// Either the route lands first and the agent stays (ErrInUse), or
		// the agent goes first and the route is refused (ErrNotFound);
		// never a route naming a removed agent.
		for round := range 5 {
			s := newStore(t, o)
			addAgent(t, s, "acme")
			var addErr, removeErr error
			var wg sync.WaitGroup
			wg.Go(func() { addErr = s.AddRoute(t.Context(), route("warehouse", "acme", ":15432")) })
			wg.Go(func() { removeErr = s.RemoveAgent(t.Context(), "acme") })
			wg.Wait()
			switch {
			case addErr == nil && errors.Is(removeErr, store.ErrInUse):
				checkRoutesCount(t, s, 1)
			case errors.Is(addErr, store.ErrNotFound) && removeErr == nil:
				checkRoutesCount(t, s, 0)
			default:
				t.Fatalf("round %d: AddRoute = %v, RemoveAgent = %v", round, addErr, removeErr)
			}
		}
	})
}

// checkOneWinner fails unless exactly one of errs is nil and the others wrap
// loser.
func checkOneWinner(t *testing.T, errs []error, loser error) {
	t.Helper()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, loser):
			t.Errorf("writer %d: %v, want nil or %q", i, err, loser)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers succeeded, want exactly 1", wins)
	}
}

func checkRoutesCount(t *testing.T, s store.Store, n int) {
	t.Helper()
	routes, err := s.Routes(t.Context())
	if err != nil {
		t.Fatalf("Routes: %v", err)
	}
	if len(routes) != n {
		t.Errorf("%d routes, want %d", len(routes), n)
	}
}
