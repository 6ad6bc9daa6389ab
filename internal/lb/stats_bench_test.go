package lb

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// BenchmarkHistoryInputs measures what the admin history reads every second
// with 500 relayed connections: the live bytes per server (a walk of the
// connection table) and the listener results; and reports the JSON size of
// the history so far per sample.
func BenchmarkHistoryInputs(b *testing.B) {
	h := newHarness(b, harnessOpts{brokers: 3})
	for i := range 500 {
		openRaw(b, h.addr, fmt.Sprint("hb-", i))
	}
	b.Run("ServerBytes/500conns", func(b *testing.B) {
		for b.Loop() {
			h.lb.ServerBytes()
		}
	})
	b.Run("Results", func(b *testing.B) {
		for b.Loop() {
			h.lb.Results(func(string, string, uint64) {})
		}
	})
	resp, err := http.Get("http://" + h.admin + "/api/v1/history")
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.Logf("history JSON: %d bytes", len(body))
}
