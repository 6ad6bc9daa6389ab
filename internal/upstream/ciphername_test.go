package upstream

import (
	"crypto/tls"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// TestCipherNamesCoverGo: every suite crypto/tls can negotiate has an
// OpenSSL name in the table.
func TestCipherNamesCoverGo(t *testing.T) {
	for _, c := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if _, ok := opensslCipher[c.ID]; !ok {
			t.Errorf("no OpenSSL name for %s (0x%02X,0x%02X)", c.Name, c.ID>>8, c.ID&0xff)
		}
	}
}

// opensslLine is a line of `openssl ciphers -V`: "0xC0,0x2F - ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 …".
var opensslLine = regexp.MustCompile(`(?m)^\s*0x([0-9A-F]{2}),0x([0-9A-F]{2}) - (\S+)`)

// TestCipherNamesMatchOpenSSL: the table's names are the ones this
// machine's openssl prints for the same ids, for every id it lists.
func TestCipherNamesMatchOpenSSL(t *testing.T) {
	out, err := exec.Command("openssl", "ciphers", "-V", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Skipf("openssl ciphers: %v", err)
	}
	listed := map[uint16]string{}
	for _, m := range opensslLine.FindAllStringSubmatch(string(out), -1) {
		hi, _ := strconv.ParseUint(m[1], 16, 8)
		lo, _ := strconv.ParseUint(m[2], 16, 8)
		listed[uint16(hi<<8|lo)] = m[3]
	}
	matched := 0
	for id, name := range opensslCipher {
		switch want, ok := listed[id]; {
		case !ok:
			t.Logf("%s: openssl does not list 0x%04X", name, id)
		case want != name:
			t.Errorf("0x%04X: table says %s, openssl %s", id, name, want)
		default:
			matched++
		}
	}
	if matched < len(tls.CipherSuites()) {
		t.Errorf("only %d of the table's names checked against openssl (it lists %d ids)", matched, len(listed))
	}
}
