package mqttwire

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestRefusalCode(t *testing.T) {
	tests := []struct {
		r      Refusal
		v3     byte
		v3ok   bool
		v5     byte
		mochi5 packets.Code
	}{
		{RefuseUnavailable, 0x03, true, 0x88, packets.ErrServerUnavailable},
		{RefuseBusy, 0x03, true, 0x89, packets.ErrServerBusy},
		{RefuseRateLimited, 0x03, true, 0x9f, packets.ErrConnectionRateExceeded},
		{RefuseTooLarge, 0, false, 0x95, packets.ErrPacketTooLarge},
		{RefuseNotAuthorized, 0x05, true, 0x87, packets.ErrNotAuthorized},
		{RefuseBadVersion, 0x01, true, 0x84, packets.ErrUnsupportedProtocolVersion},
		{RefuseIdentifier, 0x02, true, 0x85, packets.ErrClientIdentifierNotValid},
		{RefuseUsername, 0x04, true, 0x86, packets.ErrBadUsernameOrPassword},
		{RefuseWillTopic, 0, false, 0x90, packets.ErrTopicNameInvalid},
		{RefuseMalformed, 0, false, 0x81, packets.ErrMalformedPacket},
	}
	for _, tt := range tests {
		for _, v := range []byte{V31, V311, 6} {
			if code, ok := RefusalCode(v, tt.r); code != tt.v3 || ok != tt.v3ok {
				t.Errorf("RefusalCode(%d, %v) = %#x, %v; want %#x, %v", v, tt.r, code, ok, tt.v3, tt.v3ok)
			}
		}
		if code, ok := RefusalCode(V5, tt.r); code != tt.v5 || !ok || code != tt.mochi5.Code {
			t.Errorf("RefusalCode(5, %v) = %#x, %v; want %#x (mochi %#x)", tt.r, code, ok, tt.v5, tt.mochi5.Code)
		}
		if tt.r.String() == "unknown refusal" {
			t.Errorf("%d has no name", tt.r)
		}
	}
	for _, r := range []Refusal{-1, RefuseMalformed + 1} {
		if _, ok := RefusalCode(V5, r); ok || r.String() != "unknown refusal" {
			t.Errorf("Refusal %d: ok = %v, name %q", r, ok, r.String())
		}
	}
}

// The named codes agree with mochi-mqtt's.
func TestCodesMatchMochi(t *testing.T) {
	pairs := []struct {
		ours  byte
		mochi packets.Code
	}{
		{Code3UnacceptableVersion, packets.Err3UnsupportedProtocolVersion},
		{Code3IdentifierRejected, packets.Err3ClientIdentifierNotValid},
		{Code3ServerUnavailable, packets.Err3ServerUnavailable},
		{Code3BadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword},
		{Code3NotAuthorized, packets.Err3NotAuthorized},
		{Code5Success, packets.CodeSuccess},
		{Code5DisconnectWithWill, packets.CodeDisconnectWillMessage},
		{Code5UnspecifiedError, packets.ErrUnspecifiedError},
		{Code5MalformedPacket, packets.ErrMalformedPacket},
		{Code5ProtocolError, packets.ErrProtocolViolation},
		{Code5ImplementationSpecificError, packets.ErrImplementationSpecificError},
		{Code5ClientIdentifierNotValid, packets.ErrClientIdentifierNotValid},
		{Code5BadUsernameOrPassword, packets.ErrBadUsernameOrPassword},
		{Code5TopicNameInvalid, packets.ErrTopicNameInvalid},
		{Code5Banned, packets.ErrBanned},
		{Code5ServerShuttingDown, packets.ErrServerShuttingDown},
		{Code5BadAuthenticationMethod, packets.ErrBadAuthenticationMethod},
		{Code5KeepAliveTimeout, packets.ErrKeepAliveTimeout},
		{Code5SessionTakenOver, packets.ErrSessionTakenOver},
		{Code5QuotaExceeded, packets.ErrQuotaExceeded},
		{Code5AdministrativeAction, packets.ErrAdministrativeAction},
		{Code5UseAnotherServer, packets.ErrUseAnotherServer},
		{Code5ServerMoved, packets.ErrServerMoved},
		{Code5MaximumConnectTime, packets.ErrMaxConnectTime},
	}
	for _, p := range pairs {
		if p.ours != p.mochi.Code {
			t.Errorf("%#x != mochi %s %#x", p.ours, p.mochi.Reason, p.mochi.Code)
		}
	}
}
