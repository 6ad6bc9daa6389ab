package upstream

import "crypto/tls"

// opensslCipher names every cipher suite crypto/tls can negotiate
// (tls.CipherSuites and tls.InsecureCipherSuites) as OpenSSL does
// (SSL_CIPHER_get_name): the names HAProxy sends in the PROXY v2 SSL TLV's
// PP2_SUBTYPE_SSL_CIPHER, and backends used to HAProxy expect. TLS 1.3's
// OpenSSL names are the IANA ones. Matched by id against `openssl ciphers
// -V` (OpenSSL 3.0; TestCipherNamesMatchOpenSSL); the RC4 and 3DES suites,
// which that build no longer lists, against its ssl3.h and tls1.h
// (SSL3_CK_/TLS1_CK_ ids, SSL3_TXT_/TLS1_TXT_ names).
var opensslCipher = map[uint16]string{
	// TLS 1.3
	tls.TLS_AES_128_GCM_SHA256:       "TLS_AES_128_GCM_SHA256",       // 0x13,0x01
	tls.TLS_AES_256_GCM_SHA384:       "TLS_AES_256_GCM_SHA384",       // 0x13,0x02
	tls.TLS_CHACHA20_POLY1305_SHA256: "TLS_CHACHA20_POLY1305_SHA256", // 0x13,0x03

	// TLS 1.2, secure (tls.CipherSuites)
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          "ECDHE-ECDSA-AES128-SHA",        // 0xC0,0x09
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          "ECDHE-ECDSA-AES256-SHA",        // 0xC0,0x0A
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:            "ECDHE-RSA-AES128-SHA",          // 0xC0,0x13
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:            "ECDHE-RSA-AES256-SHA",          // 0xC0,0x14
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256", // 0xC0,0x2B
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384", // 0xC0,0x2C
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",   // 0xC0,0x2F
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",   // 0xC0,0x30
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",   // 0xCC,0xA8
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305", // 0xCC,0xA9

	// TLS 1.2, insecure (tls.InsecureCipherSuites; tls.ciphers refuses them)
	tls.TLS_RSA_WITH_RC4_128_SHA:                "RC4-SHA",                   // 0x00,0x05
	tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA:           "DES-CBC3-SHA",              // 0x00,0x0A
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:            "AES128-SHA",                // 0x00,0x2F
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:            "AES256-SHA",                // 0x00,0x35
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256:         "AES128-SHA256",             // 0x00,0x3C
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:         "AES128-GCM-SHA256",         // 0x00,0x9C
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:         "AES256-GCM-SHA384",         // 0x00,0x9D
	tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA:        "ECDHE-ECDSA-RC4-SHA",       // 0xC0,0x07
	tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA:          "ECDHE-RSA-RC4-SHA",         // 0xC0,0x11
	tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:     "ECDHE-RSA-DES-CBC3-SHA",    // 0xC0,0x12
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256: "ECDHE-ECDSA-AES128-SHA256", // 0xC0,0x23
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256:   "ECDHE-RSA-AES128-SHA256",   // 0xC0,0x27
}

// cipherName is OpenSSL's name for the cipher suite id, or Go's for an id
// the table lacks (a suite a later Go adds).
func cipherName(id uint16) string {
	if name, ok := opensslCipher[id]; ok {
		return name
	}
	return tls.CipherSuiteName(id)
}
