package node

import (
	"encoding/json"
	"slices"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Will properties.
//
// mochi v2.7.9 keeps of a will's properties only its user properties and
// Will Delay Interval (clients.go, ParseConnect): the Content Type,
// Correlation Data, Response Topic, Payload Format Indicator and Message
// Expiry Interval a client set [MQTT-3.1.3-10 … 3.1.3.2] were lost, so a
// will's request/response metadata never reached anyone and its expiry
// never applied. mochi's Will has no room for them and builds the will's
// PUBLISH itself (sendLWT), so the node carries them as one more user
// property, the last, named willPropsKey, put there at CONNECT (OnConnect)
// and taken out wherever a will leaves mochi: the packet written to a
// client (OnPacketEncode), and the copy the mesh, the session queues and
// the retained store get (willPacket).

// willPropsKey names the user property that carries a will's other
// properties inside mochi. A client could send a user property of that
// name last in a PUBLISH; it is then read as the properties the client
// could have set itself.
const willPropsKey = "mqlb:will-properties"

// willProps is what mochi drops of a will's properties.
type willProps struct {
	ContentType     string `json:"ct,omitempty"`
	ResponseTopic   string `json:"rt,omitempty"`
	CorrelationData []byte `json:"cd,omitempty"`
	PayloadFormat   *byte  `json:"pf,omitempty"`
	Expiry          uint32 `json:"exp,omitempty"` // Message Expiry Interval, seconds
}

// stashWillProperties appends the will's other properties to the user
// properties mochi keeps of it (OnConnect: mochi has copied the will).
func stashWillProperties(cl *mqtt.Client, pk packets.Packet) {
	if !pk.Connect.WillFlag || cl.Properties.ProtocolVersion < 5 {
		return
	}
	wp := pk.Connect.WillProperties
	p := willProps{ContentType: wp.ContentType, ResponseTopic: wp.ResponseTopic, CorrelationData: wp.CorrelationData,
		Expiry: wp.MessageExpiryInterval}
	if wp.PayloadFormatFlag {
		p.PayloadFormat = &wp.PayloadFormat
	}
	if p.ContentType == "" && p.ResponseTopic == "" && p.CorrelationData == nil && p.PayloadFormat == nil && p.Expiry == 0 {
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	// A new slice: the CONNECT's is shared with the packet mochi keeps.
	cl.Properties.Will.User = append(slices.Clip(cl.Properties.Will.User), packets.UserProperty{Key: willPropsKey, Val: string(b)})
}

// restoreWillProperties takes a will's stashed properties out of pk's user
// properties and sets them; with setExpiry, the will's Message Expiry
// Interval also becomes pk's Expiry, counted from when it was published
// (its creation, plus its delay for a delayed will). pk is returned
// unchanged when it carries none.
func restoreWillProperties(pk packets.Packet, setExpiry bool) packets.Packet {
	user := pk.Properties.User
	if len(user) == 0 || user[len(user)-1].Key != willPropsKey {
		return pk
	}
	var p willProps
	if json.Unmarshal([]byte(user[len(user)-1].Val), &p) != nil {
		return pk
	}
	pk.Properties.User = slices.Clip(user[:len(user)-1])
	if len(pk.Properties.User) == 0 {
		pk.Properties.User = nil
	}
	pk.Properties.ContentType, pk.Properties.ResponseTopic = p.ContentType, p.ResponseTopic
	pk.Properties.CorrelationData = p.CorrelationData
	if p.PayloadFormat != nil {
		pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = *p.PayloadFormat, true
	}
	if p.Expiry > 0 {
		published := pk.Created
		if published == 0 {
			published = time.Now().Unix()
		}
		published += int64(pk.Connect.WillProperties.WillDelayInterval)
		if setExpiry {
			pk.Expiry = published + int64(p.Expiry)
		}
		// What is left of it [MQTT-3.3.2-6]; at least a second.
		pk.Properties.MessageExpiryInterval = uint32(max(1, published+int64(p.Expiry)-time.Now().Unix()))
	}
	return pk
}
