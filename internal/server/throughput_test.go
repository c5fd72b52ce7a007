package server

import (
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/admin"
)

func TestThroughputRing(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	interval := ThroughputWindow / 4 // a ring of 4
	tests := []struct {
		name     string
		readings []byteCount // cumulative totals, one per interval
		want     []int64     // bytes up per sample, oldest first
	}{
		{name: "empty", want: []int64{}},
		{name: "filling", readings: []byteCount{{10, 1}, {30, 2}}, want: []int64{10, 20}},
		{name: "full", readings: []byteCount{{1, 0}, {2, 0}, {4, 0}, {8, 0}}, want: []int64{1, 1, 2, 4}},
		{name: "wrapped: oldest first", readings: []byteCount{{1, 0}, {2, 0}, {4, 0}, {8, 0}, {16, 0}, {32, 0}}, want: []int64{2, 4, 8, 16}},
		{name: "a count that goes down is no traffic", readings: []byteCount{{100, 0}, {40, 0}, {50, 0}}, want: []int64{100, 0, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newThroughputRing(interval)
			r.last = start
			for i, c := range tt.readings {
				r.record(start.Add(time.Duration(i+1)*interval), c, nil)
			}
			got := r.snapshot()
			if got.IntervalSeconds != interval.Seconds() || got.WindowSeconds != ThroughputWindow.Seconds() {
				t.Errorf("interval %v, window %v", got.IntervalSeconds, got.WindowSeconds)
			}
			if len(got.Samples) != len(tt.want) {
				t.Fatalf("%d samples, want %d", len(got.Samples), len(tt.want))
			}
			skip := len(tt.readings) - len(tt.want)
			for i, s := range got.Samples {
				if s.BytesUp != tt.want[i] {
					t.Errorf("sample %d: %d bytes up, want %d", i, s.BytesUp, tt.want[i])
				}
				if wantTime := start.Add(time.Duration(skip+i+1) * interval); !s.Time.Equal(wantTime) || s.Seconds != interval.Seconds() {
					t.Errorf("sample %d: at %v over %vs, want %v over %vs", i, s.Time, s.Seconds, wantTime, interval.Seconds())
				}
			}
		})
	}
}

func TestThroughputRingRoutes(t *testing.T) {
	r := newThroughputRing(5 * time.Second)
	now := time.Now()
	r.last = now
	r.record(now.Add(5*time.Second), byteCount{30, 300}, map[string]byteCount{"a": {10, 100}, "b": {20, 200}, "idle": {}})
	r.record(now.Add(10*time.Second), byteCount{35, 300}, map[string]byteCount{"a": {15, 100}, "b": {20, 200}, "idle": {}})
	// "b" removed and added again: its count starts over.
	r.record(now.Add(15*time.Second), byteCount{36, 301}, map[string]byteCount{"a": {15, 100}, "b": {1, 1}, "idle": {}})
	got := r.snapshot().Samples
	want := []map[string]admin.RouteBytes{
		{"a": {BytesUp: 10, BytesDown: 100}, "b": {BytesUp: 20, BytesDown: 200}},
		{"a": {BytesUp: 5}},
		nil,
	}
	for i := range want {
		if len(got[i].Routes) != len(want[i]) {
			t.Errorf("sample %d: routes %v, want %v", i, got[i].Routes, want[i])
			continue
		}
		for name, w := range want[i] {
			if got[i].Routes[name] != w {
				t.Errorf("sample %d: route %s %+v, want %+v", i, name, got[i].Routes[name], w)
			}
		}
	}
}
