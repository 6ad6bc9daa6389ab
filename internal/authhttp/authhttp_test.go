package authhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestAskErrorsHideURLSecrets: the errors of a request that failed (a
// service over the timeout, one that is down) name the service by scheme,
// host and path, never by the URL's user info or query (where an API key
// goes): the LB and the nodes log them.
func TestAskErrorsHideURLSecrets(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server sees the client go
		<-r.Context().Done()        // slower than any timeout
	}))
	defer svc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := NewClient(1)
	for name, host := range map[string]string{"timeout": strings.TrimPrefix(svc.URL, "http://"), "down": down} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, _, err := Ask(ctx, client, "http://svcuser:url-password@"+host+"/mqtt/auth?api_key=query-secret#frag", &Request{Password: "pw"}, 1<<10)
		cancel()
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		msg := err.Error()
		for _, secret := range []string{"query-secret", "api_key", "svcuser", "url-password", "frag"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: error quotes %q: %s", name, secret, msg)
			}
		}
		if !strings.Contains(msg, `"http://`+host+`/mqtt/auth"`) {
			t.Errorf("%s: error %q does not name the service as http://%s/mqtt/auth", name, msg, host)
		}
		if name == "timeout" && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("timeout: %v does not unwrap to context.DeadlineExceeded", err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@auth.example:8443/a/b?api_key=s&x=1#f": "https://auth.example:8443/a/b",
		"http://auth.example/check?":                        "http://auth.example/check",
		"http://auth.example":                               "http://auth.example",
		"http://[::1]:bad/x?k=s":                            "(unparsable URL)",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		allow  bool
		err    bool
	}{
		{200, `{"result":"allow"}`, true, false},
		{200, `{"result":"deny"}`, false, false},
		{200, `{"result":"Allow"}`, false, true},
		{200, `{}`, false, true},
		{200, `allow`, false, true},
		{403, `{"result":"allow"}`, false, true},
		{302, `{"result":"allow"}`, false, true},
		{500, ``, false, true},
		// A key twice in one object: encoding/json keeps the last.
		{200, `{"result":"deny","result":"allow"}`, false, true},
		{200, `{"result":"allow","result":"allow"}`, false, true},
		{200, `{"result":"deny","Result":"allow"}`, false, true},
		{200, "{\"result\":\"deny\",\"re\u017fult\":\"allow\"}", false, true}, // ſ folds to s
		{200, `{"result":"allow","acl":[],"acl":[{"allow":true,"topic":"#"}]}`, false, true},
		{200, `{"result":"allow","acl":[{"allow":false,"topic":"#","allow":true}]}`, false, true},
		// The same keys in different objects are no duplicates.
		{200, `{"result":"allow","acl":[{"allow":true,"topic":"a"},{"allow":false,"topic":"b"}]}`, true, false},
		{200, `{"result":"deny","x":{"result":"allow","y":[{"result":1}]}}`, false, false},
	} {
		allow, _, err := Parse(tc.status, []byte(tc.body))
		if allow != tc.allow || (err != nil) != tc.err {
			t.Errorf("%d %s: %v, %v", tc.status, tc.body, allow, err)
		}
	}
}
