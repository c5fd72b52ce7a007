package server

import (
	"context"
	"sync"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
)

// ThroughputWindow is how far back the throughput history reaches.
const ThroughputWindow = 10 * time.Minute

// byteCount is a cumulative count of bytes moved.
type byteCount struct{ up, down int64 }

// throughputRing keeps the bytes moved per interval over the last
// ThroughputWindow. Memory is fixed: one sample per interval, and in each
// sample only the routes that moved bytes.
type throughputRing struct {
	// Static after construction.
	interval time.Duration

	// Owned by the sampler: the previous reading, which the next one is
	// compared with.
	last       time.Time
	lastTotal  byteCount
	lastRoutes map[string]byteCount

	mu      sync.Mutex
	samples []admin.ThroughputSample // a ring once len reaches cap
	next    int                      // the oldest sample once the ring is full
}

func newThroughputRing(interval time.Duration) *throughputRing {
	n := max(1, int(ThroughputWindow/interval))
	return &throughputRing{interval: interval, samples: make([]admin.ThroughputSample, 0, n)}
}

// record turns a cumulative reading taken at now into a sample. A count
// that went down (a route removed and added again under its name) counts
// as nothing moved, never as a negative amount.
func (t *throughputRing) record(now time.Time, total byteCount, routes map[string]byteCount) {
	sample := admin.ThroughputSample{
		Time:      now.UTC(),
		Seconds:   now.Sub(t.last).Seconds(),
		BytesUp:   max(0, total.up-t.lastTotal.up),
		BytesDown: max(0, total.down-t.lastTotal.down),
	}
	for name, c := range routes {
		prev := t.lastRoutes[name]
		d := admin.RouteBytes{BytesUp: max(0, c.up-prev.up), BytesDown: max(0, c.down-prev.down)}
		if d == (admin.RouteBytes{}) {
			continue
		}
		if sample.Routes == nil {
			sample.Routes = map[string]admin.RouteBytes{}
		}
		sample.Routes[name] = d
	}
	t.last, t.lastTotal, t.lastRoutes = now, total, routes

	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < cap(t.samples) {
		t.samples = append(t.samples, sample)
		return
	}
	t.samples[t.next] = sample
	t.next = (t.next + 1) % len(t.samples)
}

// snapshot returns the samples, oldest first. Samples are never changed
// once recorded, so their route maps may be shared.
func (t *throughputRing) snapshot() *admin.Throughput {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := &admin.Throughput{
		IntervalSeconds: t.interval.Seconds(),
		WindowSeconds:   (time.Duration(cap(t.samples)) * t.interval).Seconds(),
		Samples:         make([]admin.ThroughputSample, 0, len(t.samples)),
	}
	out.Samples = append(out.Samples, t.samples[t.next:]...)
	out.Samples = append(out.Samples, t.samples[:t.next]...)
	return out
}

// sampleThroughput records the routes' byte counts every interval until
// the server closes.
func (s *Server) sampleThroughput() {
	defer s.wg.Done()
	tick := time.NewTicker(s.throughput.interval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		total, routes := s.countBytes()
		s.throughput.record(time.Now(), total, routes)
	}
}

// countBytes returns the bytes moved since the server started, in total
// and by route: those of ended sessions plus those of live ones so far.
// A session's bytes move from the live count to the ended count under mu
// (see session.finish), so no byte is counted twice or missed.
func (s *Server) countBytes() (byteCount, map[string]byteCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.endedBytes
	routes := make(map[string]byteCount, len(s.routes))
	seen := make(map[*route]bool, len(s.routes))
	addRoute := func(r *route) {
		if seen[r] {
			return
		}
		seen[r] = true
		c := routes[r.cfg.Name]
		c.up += r.bytesUp.Load()
		c.down += r.bytesDown.Load()
		routes[r.cfg.Name] = c
	}
	for _, r := range s.routes {
		addRoute(r)
	}
	for _, ss := range s.sessions {
		// A removed route is still counted while its sessions run.
		addRoute(ss.route)
		up, down := ss.counters.AToB.Load(), ss.counters.BToA.Load()
		total.up += up
		total.down += down
		c := routes[ss.route.cfg.Name]
		c.up += up
		c.down += down
		routes[ss.route.cfg.Name] = c
	}
	return total, routes
}

// Throughput returns the bytes moved per interval over the last
// ThroughputWindow, oldest first.
func (s *Server) Throughput(ctx context.Context) (*admin.Throughput, error) {
	return s.throughput.snapshot(), nil
}
