package session

import (
	"strconv"
	"testing"
)

// TestReceivedCacheBounded: the values kept until a PUBREL are taken once;
// entries no PUBREL takes (the exchange went on elsewhere) cannot grow the
// cache past maxReceivedCached.
func TestReceivedCacheBounded(t *testing.T) {
	var c receivedCache
	c.keep("i.a.1", []byte("v1"))
	if v := c.take("i.a.1"); string(v) != "v1" {
		t.Fatalf("take: %q", v)
	}
	if v := c.take("i.a.1"); v != nil {
		t.Fatalf("taken twice: %q", v)
	}
	for i := range maxReceivedCached + 10 {
		c.keep("i.b."+strconv.Itoa(i), []byte("v"))
	}
	if n := c.n.Load(); n > maxReceivedCached || n < 0 {
		t.Fatalf("%d entries counted, at most %d", n, maxReceivedCached)
	}
	k := 0
	c.m.Range(func(any, any) bool { k++; return true })
	if int64(k) != c.n.Load() {
		t.Fatalf("%d entries, %d counted", k, c.n.Load())
	}
}
