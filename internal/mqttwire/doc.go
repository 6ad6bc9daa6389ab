// Package mqttwire is mqlb's MQTT codec: the wire format the load balancer
// needs before a single byte reaches a broker.
//
// It owns the fixed header and its Variable Byte Integer length, decoding and
// validating the first packet of a client connection, which must be a CONNECT
// for MQTT 3.1 ("MQIsdp", level 3), 3.1.1 ("MQTT", level 4) or 5.0 ("MQTT",
// level 5), and encoding the few packets mqlb sends itself: CONNECT (health
// checks, load generator), CONNACK (refusals in the client's own version),
// DISCONNECT and PINGREQ. For the broker node it also checks a client's
// SUBSCRIBE and UNSUBSCRIBE before the broker reads them (subscribe.go).
//
// Decoders read untrusted bytes: they never panic, check every length against
// the bytes present, and work directly on the caller's slice. A decoded
// CONNECT copies only what routing needs (client identifier and user name);
// it never keeps the password, and it never aliases the caller's buffer.
//
// Spec references: [MQTT-x.y.z-n] are conformance statements of MQTT 3.1.1
// (OASIS, 2014) or MQTT 5.0 (OASIS, 2019), labelled "v3.1.1" or "v5" where the
// two number them differently; "v5 §x.y.z" is a section of the 5.0 spec for
// rules that have no conformance number (most "Protocol Error" rules).
package mqttwire
