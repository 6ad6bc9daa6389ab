package authhttp

import "testing"

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
	} {
		allow, _, err := Parse(tc.status, []byte(tc.body))
		if allow != tc.allow || (err != nil) != tc.err {
			t.Errorf("%d %s: %v, %v", tc.status, tc.body, allow, err)
		}
	}
}
