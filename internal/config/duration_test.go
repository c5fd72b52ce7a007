package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "10s", want: 10 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "-1s", want: -time.Second}, // parsed; Validate refuses it
		{in: "10", wantErr: `invalid duration "10" (want a number with a unit, like "10s" or "1m30s")`},
		{in: "10x", wantErr: `invalid duration "10x"`},
		{in: "", wantErr: `invalid duration ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Duration != tt.want {
				t.Fatalf("got %v, %v; want %v", d, err, tt.want)
			}
			text, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("%q does not round-trip: %v %v", text, back, err)
			}
		})
	}
	b, err := json.Marshal(struct{ D Duration }{Duration{90 * time.Second}})
	if err != nil || string(b) != `{"D":"1m30s"}` {
		t.Errorf("json = %s, %v", b, err)
	}
}
