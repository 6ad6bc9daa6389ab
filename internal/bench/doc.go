// Package bench is mqlb's load generator: `mqlb bench conn` opens MQTT
// connections at a given rate and holds them, `mqlb bench pubsub` measures
// publish/subscribe throughput, loss and end-to-end latency, and `mqlb bench
// report` turns the JSON results of several runs into one comparison table.
//
// It owns the measurement: connection ramps on raw sockets (a CONNECT written
// with mqttwire and its CONNACK read back, nothing else, so the cost measured
// is the target's, not a client library's), pub/sub through real MQTT clients
// (paho.mqtt.golang for 3.1.1, paho.golang for 5.0, because QoS 1 and 2 need
// the whole acknowledgement flow), log-linear latency histograms of bounded
// size, the loss/duplicate/out-of-order accounting of message streams, CPU
// time and RSS of watched processes (/proc), and the live progress line.
package bench
