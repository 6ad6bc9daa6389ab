package node

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestDemoteWillDisconnect: mochi's warning "error processing packet" for
// a client's DISCONNECT 0x04 (disconnect with will message), a normal end,
// is logged at debug; the same warning for a real error stays a warning.
func TestDemoteWillDisconnect(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(demote{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
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
