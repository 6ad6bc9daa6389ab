package node

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestRestoreWillPropertiesLeavesOthers: only a last user property named
// willPropsKey that decodes is taken out; anything else is left as it is.
func TestRestoreWillPropertiesLeavesOthers(t *testing.T) {
	for _, user := range [][]packets.UserProperty{
		nil,
		{{Key: "a", Val: "b"}},
		{{Key: willPropsKey, Val: `{"ct":"x"}`}, {Key: "a", Val: "b"}}, // not last
		{{Key: willPropsKey, Val: "not json"}},
	} {
		pk := packets.Packet{Properties: packets.Properties{User: user}}
		got := restoreWillProperties(pk, true)
		if len(got.Properties.User) != len(user) || got.Properties.ContentType != "" || got.Expiry != 0 {
			t.Errorf("%v: %+v", user, got.Properties)
		}
	}
	pk := packets.Packet{Created: 1000, Properties: packets.Properties{User: []packets.UserProperty{{Key: "a", Val: "b"},
		{Key: willPropsKey, Val: `{"ct":"x","exp":60}`}}}}
	got := restoreWillProperties(pk, true)
	if len(got.Properties.User) != 1 || got.Properties.ContentType != "x" || got.Expiry != 1060 {
		t.Errorf("restored: %+v expiry %d", got.Properties, got.Expiry)
	}
	if len(pk.Properties.User) != 2 {
		t.Error("the original packet's user properties changed")
	}
}
