package topic

import "testing"

func TestValidFilter(t *testing.T) {
	for f, ok := range map[string]bool{
		"a/b": true, "#": true, "+": true, "a/+/c": true, "a/#": true, "/": true, "+/+": true, "$SYS/#": true,
		"": false, "a#": false, "a/#/b": false, "a/b+": false, "#/a": false, "a/+b/c": false,
	} {
		if err := ValidFilter(f); (err == nil) != ok {
			t.Errorf("ValidFilter(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}

func TestSplitShared(t *testing.T) {
	for _, tc := range []struct {
		f, group, inner string
		ok              bool
	}{
		{"$share/g/a/#", "g", "a/#", true},
		{"$SHARE/grp/a/b", "grp", "a/b", true},
		{"$share/g", "", "$share/g", false},
		{"$share//a", "", "$share//a", false},
		{"$share/g/", "", "$share/g/", false},
		{"a/b", "", "a/b", false},
		{"$shared/g/a", "", "$shared/g/a", false},
	} {
		g, in, ok := SplitShared(tc.f)
		if g != tc.group || in != tc.inner || ok != tc.ok {
			t.Errorf("SplitShared(%q) = %q, %q, %v; want %q, %q, %v", tc.f, g, in, ok, tc.group, tc.inner, tc.ok)
		}
	}
}

func TestShareName(t *testing.T) {
	for name, want := range map[string]bool{
		"$share/g/t": true, "$SHARE/g/t": true, "$share": true, "$share/": true,
		"$shared/g/t": false, "a/$share/t": false, "$SYS/x": false, "share/g/t": false,
	} {
		if got := ShareName(name); got != want {
			t.Errorf("ShareName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidSubscription(t *testing.T) {
	for f, ok := range map[string]bool{
		"a/b": true, "$share/g/a/#": true, "$SHARE/g/+": true, "$share/g//": true, "$share/g/$share/t": true, "$shared": true,
		"a/#/b": false, "a+": false, "": false, "$share": false, "$share/": false, "$share/g": false, "$share/g/": false,
		"$share//x": false, "$share/+/x": false, "$share/#": false, "$share/g+/x": false, "$share/g/a+": false,
	} {
		if err := ValidSubscription(f); (err == nil) != ok {
			t.Errorf("ValidSubscription(%q) = %v, want ok=%v", f, err, ok)
		}
	}
}

func TestValidShareName(t *testing.T) {
	for g, ok := range map[string]bool{
		"g": true, "group-1": true, "$x": true, "é": true,
		"": false, "a/b": false, "+": false, "#": false, "g+": false, "g#": false,
	} {
		if err := ValidShareName(g); (err == nil) != ok {
			t.Errorf("ValidShareName(%q) = %v, want ok=%v", g, err, ok)
		}
	}
}
