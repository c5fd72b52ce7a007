// Package metricstest scrapes, parses and lints Prometheus metrics for
// tests: the text format is parsed with the Prometheus libraries
// themselves (expfmt, promlint), so what passes here is what a Prometheus
// server reads.
package metricstest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Get fetches url, sending "Authorization: Bearer token" unless token is
// empty, and returns the status code and body.
func Get(t testing.TB, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// Scrape fetches url as Get does, fails t unless the answer is 200 in the
// Prometheus text format, and returns it parsed, with the text.
func Scrape(t testing.TB, url, token string) (Families, string) {
	t.Helper()
	code, body := Get(t, url, token)
	if code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", url, code, body)
	}
	return Parse(t, body), body
}

// Families are parsed metric families by name.
type Families map[string]*dto.MetricFamily

// Parse parses the text format with legacy (strict) name validation.
func Parse(t testing.TB, text string) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

// Lint fails t for every problem promlint finds in text.
func Lint(t testing.TB, text string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// find returns the metric of family name whose labels include labels
// ("key=value" each; an empty value matches an absent label), and whether
// exactly one matched.
func (f Families) find(name string, labels []string) (*dto.MetricFamily, *dto.Metric, error) {
	fam := f[name]
	if fam == nil {
		return nil, nil, fmt.Errorf("no metric %s", name)
	}
	var found *dto.Metric
	for _, m := range fam.Metric {
		if !hasLabels(m, labels) {
			continue
		}
		if found != nil {
			return nil, nil, fmt.Errorf("%s%v matches more than one series", name, labels)
		}
		found = m
	}
	if found == nil {
		return nil, nil, fmt.Errorf("no series %s%v", name, labels)
	}
	return fam, found, nil
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		got := ""
		for _, lp := range m.Label {
			if lp.GetName() == k {
				got = lp.GetValue()
			}
		}
		if got != v {
			return false
		}
	}
	return true
}

// Value returns the value of the counter, gauge or untyped series of name
// with labels ("key=value" each), or an error when there is not exactly
// one such series.
func (f Families) Value(name string, labels ...string) (float64, error) {
	fam, m, err := f.find(name, labels)
	if err != nil {
		return 0, err
	}
	switch fam.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), nil
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), nil
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue(), nil
	}
	return 0, fmt.Errorf("%s is a %s", name, fam.GetType())
}

// Count returns the sample count of the histogram series of name with
// labels.
func (f Families) Count(name string, labels ...string) (uint64, error) {
	fam, m, err := f.find(name, labels)
	if err != nil {
		return 0, err
	}
	if fam.GetType() != dto.MetricType_HISTOGRAM {
		return 0, fmt.Errorf("%s is a %s, not a histogram", name, fam.GetType())
	}
	return m.GetHistogram().GetSampleCount(), nil
}

// Type returns the type of family name, or "" if there is none.
func (f Families) Type(name string) string {
	if fam := f[name]; fam != nil {
		return strings.ToLower(fam.GetType().String())
	}
	return ""
}

// Want checks the value of a counter or gauge series.
func (f Families) Want(t testing.TB, want float64, name string, labels ...string) {
	t.Helper()
	got, err := f.Value(name, labels...)
	if err != nil {
		t.Error(err)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// WantAtLeast checks that a counter or gauge series is at least min.
func (f Families) WantAtLeast(t testing.TB, min float64, name string, labels ...string) {
	t.Helper()
	got, err := f.Value(name, labels...)
	if err != nil {
		t.Error(err)
	} else if got < min {
		t.Errorf("%s%v = %v, want at least %v", name, labels, got, min)
	}
}

// WantCount checks the sample count of a histogram series.
func (f Families) WantCount(t testing.TB, n uint64, name string, labels ...string) {
	t.Helper()
	got, err := f.Count(name, labels...)
	if err != nil {
		t.Error(err)
	} else if got != n {
		t.Errorf("%s%v count = %d, want %d", name, labels, got, n)
	}
}
