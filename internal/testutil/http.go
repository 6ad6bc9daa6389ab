package testutil

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// HTTP sends method url with body (none when "") and returns the status and
// the answer's body; a transport error fails the test.
func HTTP(t testing.TB, method, url, body string) (int, string) {
	t.Helper()
	return HTTPWith(t, method, url, body, nil)
}

// HTTPWith is HTTP with extra headers ("Host" sets the Host header).
func HTTPWith(t testing.TB, method, url, body string, hdr map[string]string) (int, string) {
	t.Helper()
	code, _, b := HTTPDo(t, method, url, body, hdr)
	return code, b
}

// HTTPDo is HTTPWith that also returns the answer's headers.
func HTTPDo(t testing.TB, method, url, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
