// mqtt.js — NGINX stream (njs) preread: the MQTT client identifier from the
// CONNECT packet, for `hash $mqtt_client_id consistent`, as the NGINX/MQTT
// session-persistence post configures it (js_preread + js_set). Written from
// the MQTT 3.1.1 (section 3.1) and 5.0 (section 3.1) specifications:
//
//   fixed header   0x10, Remaining Length (variable byte integer, 1-4 bytes)
//   variable hdr   Protocol Name (2-byte length + "MQTT", or "MQIsdp" for 3.1),
//                  Protocol Level (3, 4 or 5), Connect Flags (bit 0 reserved,
//                  must be 0), Keep Alive (2 bytes),
//                  5.0 only: Properties (variable byte integer length + bytes)
//   payload        Client Identifier (2-byte length + UTF-8), ...
//
// The CONNECT may arrive in any number of reads: preread waits until the
// client identifier is complete. Anything that is not a CONNECT (or is
// malformed, or larger than MAX before the identifier ends) is refused, as
// HAProxy's `mqtt_is_valid` rule does; so is a client that closes first.

var MAX = 16384; // like HAProxy's inspection buffer (tune.bufsize)
var clientId = '';

// parse returns the client identifier's bytes, null when more bytes are
// needed, or a string (the reason) when the bytes are not a valid CONNECT.
function parse(b) {
    var n = b.length, i = 0;
    if (n < 1) return null;
    if (b[0] !== 0x10) return 'not a CONNECT';
    // Remaining Length: at most 4 bytes, 7 bits each.
    var rl = 0, mul = 1;
    for (i = 1; ; i++) {
        if (i > 4) return 'remaining length longer than 4 bytes';
        if (i >= n) return null;
        rl += (b[i] & 0x7f) * mul;
        mul *= 128;
        if ((b[i] & 0x80) === 0) break;
    }
    i++;
    var end = i + rl; // first byte after the packet
    function need(k) { return i + k <= n; }
    function within(k) { return i + k <= end; }
    // Protocol Name
    if (!need(2)) return null;
    var pl = (b[i] << 8) | b[i + 1];
    if (pl !== 4 && pl !== 6) return 'bad protocol name length';
    if (!within(2 + pl + 4)) return 'CONNECT too short';
    if (!need(2 + pl + 4)) return null;
    var name = String.fromCharCode.apply(null, b.slice(i + 2, i + 2 + pl));
    i += 2 + pl;
    var level = b[i];
    if (!((name === 'MQTT' && (level === 4 || level === 5)) || (name === 'MQIsdp' && level === 3))) {
        return 'unsupported protocol ' + name + ' level ' + level;
    }
    if (b[i + 1] & 0x01) return 'reserved connect flag set';
    i += 4; // level, flags, keep alive
    if (level === 5) { // Properties: variable byte integer length, then skip
        var plen = 0;
        mul = 1;
        for (var k = 0; ; k++) {
            if (k >= 4) return 'properties length longer than 4 bytes';
            if (!within(1)) return 'CONNECT too short';
            if (!need(1)) return null;
            var c = b[i++];
            plen += (c & 0x7f) * mul;
            mul *= 128;
            if ((c & 0x80) === 0) break;
        }
        if (!within(plen)) return 'properties beyond the packet';
        i += plen;
    }
    // Client Identifier
    if (!within(2)) return 'CONNECT too short';
    if (!need(2)) return null;
    var idLen = (b[i] << 8) | b[i + 1];
    i += 2;
    if (!within(idLen)) return 'client identifier beyond the packet';
    if (!need(idLen)) return null;
    return b.slice(i, i + idLen);
}

function decode(bytes) {
    if (typeof Buffer !== 'undefined') return Buffer.from(bytes).toString('utf8');
    return String.fromCharCode.apply(null, bytes);
}

function preread(s) {
    // Each call brings everything read so far (preread does not consume),
    // the first one possibly nothing.
    s.on('upload', function (data, flags) {
        var got = [];
        if (typeof data === 'string') {
            for (var j = 0; j < data.length; j++) got.push(data.charCodeAt(j) & 0xff);
        } else {
            for (var j = 0; j < data.length; j++) got.push(data[j]);
        }
        var r = parse(got);
        if (r === null && got.length < MAX && !flags.last) return; // wait for more
        s.off('upload');
        if (r === null || typeof r === 'string') {
            s.warn('mqtt: refused: ' + (r || (flags.last ? 'closed before the client identifier' : 'CONNECT larger than ' + MAX + ' bytes')));
            s.done(403);
            return;
        }
        clientId = decode(r);
        s.done();
    });
}

function getClientId(s) {
    return clientId;
}

export default {preread, getClientId, parse};
