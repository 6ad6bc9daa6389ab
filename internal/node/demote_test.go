package node

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestDemoteWillDisconnect: mochi's warning "error processing packet" for
// a client's DISCONNECT 0x04 (disconnect with will message), a normal end,
// is logged at debug; the same warning for a real error stays a warning.
func TestDemoteWillDisconnect(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(demote{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), nil})
	log.Warn("error processing packet", "error", packets.CodeDisconnectWillMessage, "client", "c1")
	if buf.Len() != 0 {
		t.Errorf("DISCONNECT 0x04 logged at info or above: %s", buf.String())
	}
	log.Warn("error processing packet", "error", packets.ErrProtocolViolation, "client", "c2")
	log.Warn("error processing packet", "error", errors.New("boom"), "client", "c3")
	if got := buf.String(); !strings.Contains(got, "client=c2") || !strings.Contains(got, "client=c3") {
		t.Errorf("real errors not logged as warnings: %s", got)
	}
}

// TestDemotePerDeliveryWarnings: mochi's warning per dropped delivery is
// written once per interval, the next one saying how many were not.
func TestDemotePerDeliveryWarnings(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(demote{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), newPerMessage(time.Hour)})
	for range 1000 {
		log.Warn("client store quota reached", "client", "c1")
	}
	log.Warn("something else", "client", "c1")
	if n := strings.Count(buf.String(), "client store quota reached"); n != 1 {
		t.Errorf("%d lines for 1000 drops, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "something else") {
		t.Error("another warning was held back")
	}
	p := newPerMessage(time.Minute)
	t0 := time.Unix(1000, 0)
	p.allow("m", t0)
	p.allow("m", t0.Add(time.Second))
	p.allow("m", t0.Add(2*time.Second))
	if ok, held := p.allow("m", t0.Add(time.Minute)); !ok || held != 2 {
		t.Errorf("after the interval: %v, %d held; want true, 2", ok, held)
	}
}
