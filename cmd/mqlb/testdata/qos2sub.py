#!/usr/bin/python3
"""A persistent QoS 2 subscriber for the durability tests (paho-mqtt for
Python 1.6). It keeps its QoS 2 receiver state across reconnects and hands
a message on at PUBREL [MQTT-4.3.3], retries when refused, and subscribes
on every connection.

usage: qos2sub.py HOST PORT CLIENT_ID TOPIC VERSION(4|5)

It prints "CONNACK <code> <session present>" per connection, "SUBACK" per
subscription and each message's payload on a line of its own.
"""
import os
import signal
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

host, port, client_id, topic, version = sys.argv[1:6]
v5 = version == "5"


def out(line):
    print(line, flush=True)


def on_connect(client, userdata, flags, rc, properties=None):
    code = rc.value if v5 else rc
    out(f"CONNACK {code} {flags['session present']}")
    if code == 0:
        client.subscribe(topic, qos=2)


def on_subscribe(client, userdata, mid, granted, properties=None):
    out("SUBACK")


def on_message(client, userdata, msg):
    out(msg.payload.decode())


if v5:
    client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
else:
    client = mqtt.Client(client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
if os.environ.get("MQLB_TEST_LOGDIR"):  # the test then keeps stderr: paho's packet log
    client.on_log = lambda c, u, level, buf: print(f"{time.time():.3f} {buf}", file=sys.stderr, flush=True)
client.reconnect_delay_set(min_delay=1, max_delay=1)
signal.signal(signal.SIGTERM, lambda *_: client.disconnect())

if v5:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    client.connect_async(host, int(port), keepalive=10, clean_start=False, properties=props)
else:
    client.connect_async(host, int(port), keepalive=10)
client.loop_forever(retry_first_connection=True)
