package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// maxLogString bounds a string value in a log record (a topic may be 64 KiB).
const maxLogString = 256

// redact is the slog.Handler in front of every log of a node, mochi's
// included: no password, token or payload reaches a log at any level.
// mochi v2.7.9 logs whole packets ("error processing packet" at warn, with
// "pk"): a second CONNECT's password as a byte list, a refused 1 MiB publish
// as a 3.7 MB line. A packet becomes its type, size, id, QoS and reason code;
// bytes become their count; any other value that is not a plain scalar or an
// error becomes its type name; strings and error texts are cut at
// maxLogString bytes.
type redact struct{ slog.Handler }

func (r redact) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(safeAttr(a))
		return true
	})
	return r.Handler.Handle(ctx, out)
}

func (r redact) WithAttrs(as []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(as))
	for i, a := range as {
		safe[i] = safeAttr(a)
	}
	return redact{r.Handler.WithAttrs(safe)}
}

func (r redact) WithGroup(g string) slog.Handler { return redact{r.Handler.WithGroup(g)} }

func safeAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, cut(v.String()))
	case slog.KindGroup:
		g := v.Group()
		safe := make([]any, len(g))
		for i, ga := range g {
			safe[i] = safeAttr(ga)
		}
		return slog.Group(a.Key, safe...)
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: safeAny(v.Any())}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func safeAny(x any) slog.Value {
	switch x := x.(type) {
	case nil:
		return slog.StringValue("<nil>")
	case packets.Packet:
		return packetSummary(&x)
	case *packets.Packet:
		return packetSummary(x)
	case []byte:
		return slog.StringValue(fmt.Sprintf("%d bytes", len(x)))
	case error:
		return slog.StringValue(cut(x.Error()))
	}
	return slog.StringValue(fmt.Sprintf("%T", x))
}

// packetSummary describes a packet without its strings and bytes: no
// password, payload, will or user property.
func packetSummary(pk *packets.Packet) slog.Value {
	if pk == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("type", packets.PacketNames[pk.FixedHeader.Type]),
		slog.Int("remaining", pk.FixedHeader.Remaining),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Int("id", int(pk.PacketID)),
		slog.Int("payload_bytes", len(pk.Payload)),
		slog.String("reason", fmt.Sprintf("0x%02x", pk.ReasonCode)),
	)
}

// cut shortens s to maxLogString bytes, saying how long it was.
func cut(s string) string {
	if len(s) <= maxLogString {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:maxLogString], len(s))
}
