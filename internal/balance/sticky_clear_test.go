package balance

import "testing"

func TestStickyClear(t *testing.T) {
	fs := equalFakes(3)
	st := mustNew(t, "sticky", fs, Options{}).(*sticky)
	for _, id := range []string{"a", "b", "c"} {
		c := &Conn{ClientID: id}
		s := st.Pick(c, nil)
		st.Placed(c, s)
		st.Released(c, s)
	}
	if n := st.Clear("b"); n != 1 || st.Len() != 2 {
		t.Fatalf("clear b: removed %d, left %d", n, st.Len())
	}
	if n := st.Clear("nope"); n != 0 {
		t.Fatalf("clear unknown: removed %d", n)
	}
	c := &Conn{ClientID: "a"}
	st.Placed(c, st.Pick(c, nil)) // active entries are cleared too
	if n := st.Clear(""); n != 2 || st.Len() != 0 {
		t.Fatalf("clear all: removed %d, left %d", n, st.Len())
	}
	st.Released(c, fs[0]) // counting down a cleared entry is harmless
}
