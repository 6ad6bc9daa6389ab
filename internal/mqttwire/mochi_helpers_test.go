package mqttwire

import (
	"bytes"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiConnect is a Connect as mochi-mqtt's packets package would fill it.
func mochiConnect(c *Connect) packets.Packet {
	name := []byte("MQTT")
	if c.Version == V31 {
		name = []byte("MQIsdp")
	}
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: c.Version,
		Properties: packets.Properties{
			SessionExpiryInterval:     c.SessionExpiry,
			SessionExpiryIntervalFlag: c.SessionExpiry != 0,
		},
		Connect: packets.ConnectParams{
			ProtocolName:     name,
			Clean:            c.CleanStart,
			Keepalive:        c.KeepAlive,
			ClientIdentifier: c.ClientID,
			Username:         []byte(c.Username),
			UsernameFlag:     c.HasUsername,
			Password:         c.Password,
			PasswordFlag:     c.HasPassword,
			WillFlag:         c.WillFlag,
			WillQos:          c.WillQoS,
			WillRetain:       c.WillRetain,
			WillTopic:        c.WillTopic,
			WillPayload:      c.WillPayload,
		},
	}
}

// fromMochi is the Connect mochi decoded, in our terms.
func fromMochi(pk *packets.Packet, size int) Connect {
	return Connect{
		Version:       pk.ProtocolVersion,
		CleanStart:    pk.Connect.Clean,
		KeepAlive:     pk.Connect.Keepalive,
		ClientID:      pk.Connect.ClientIdentifier,
		Username:      string(pk.Connect.Username),
		HasUsername:   pk.Connect.UsernameFlag,
		HasPassword:   pk.Connect.PasswordFlag,
		WillFlag:      pk.Connect.WillFlag,
		WillQoS:       pk.Connect.WillQos,
		WillRetain:    pk.Connect.WillRetain,
		WillTopic:     pk.Connect.WillTopic,
		WillPayload:   bytes.Clone(pk.Connect.WillPayload),
		SessionExpiry: pk.Properties.SessionExpiryInterval,
		Size:          size,
	}
}
