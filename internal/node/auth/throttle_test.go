package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"
)

// TestBcryptSlotsCapped: with every bcrypt slot taken, a password check
// waits and then fails as busy instead of adding to the CPU load.
func TestBcryptSlotsCapped(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := comparePassword(hash, []byte("pw")); err != nil {
		t.Fatalf("free slots: %v", err)
	}
	for range cap(bcryptSlots) {
		bcryptSlots <- struct{}{}
	}
	defer func() {
		for range cap(bcryptSlots) {
			<-bcryptSlots
		}
	}()
	old := bcryptWait
	bcryptWait = 10 * time.Millisecond
	defer func() { bcryptWait = old }()
	if err := comparePassword(hash, []byte("pw")); !errors.Is(err, errBusy) {
		t.Fatalf("all %d slots taken: %v, want errBusy", cap(bcryptSlots), err)
	}
}

// TestBudgets: a key is refused once its burst of failures is used,
// failures beyond it run the budget into debt (bounded by maxDebt) that is
// paid back one per FailureEvery, and the table stays bounded.
func TestBudgets(t *testing.T) {
	b := newBudgets()
	now := time.Now()
	for i := range FailureBurst {
		if !b.allows("k", now) {
			t.Fatalf("refused after %d failures", i)
		}
		b.charge("k", now)
	}
	if b.allows("k", now) || !b.allows("other", now) {
		t.Fatal("want k refused and other allowed")
	}
	if !b.spent("k", now) || b.spent("k", now) {
		t.Fatal("spent should report once per episode")
	}
	if !b.allows("k", now.Add(FailureEvery)) {
		t.Fatal("still refused after FailureEvery")
	}
	// 5 more failures checked in parallel before the first counted: 5 more
	// FailureEvery of refusals.
	for range 5 {
		b.charge("k", now)
	}
	if b.allows("k", now.Add(5*FailureEvery)) || !b.allows("k", now.Add(6*FailureEvery)) {
		t.Fatal("a debt of 5 failures should refuse for 5 FailureEvery, then allow")
	}
	for range 10 * maxDebt {
		b.charge("g", now)
	}
	if !b.allows("g", now.Add((maxDebt+1)*FailureEvery)) {
		t.Fatalf("refused after %d FailureEvery: the debt is not bounded by maxDebt", maxDebt+1)
	}
	for i := range maxTracked + 10 {
		b.charge(string(rune(i+1000)), now)
	}
	if len(b.m) > maxTracked {
		t.Fatalf("%d keys tracked, cap %d", len(b.m), maxTracked)
	}
}

// TestBusyIsNotBadCredentials: with every bcrypt slot busy (a reconnect
// storm), a client with the right password is refused with "server busy"
// (v5 0x89) / "server unavailable" (3.1.1 0x03), which tells it to come
// back, not with "bad user name or password", which tells it to give up;
// and such refusals do not spend the address's budget.
func TestBusyIsNotBadCredentials(t *testing.T) {
	_, addrs := startBroker(t, NewThrottle(mustNew(t, Options{UsersFile: usersFile(t, hashLine(t, "alice", "right"))})))
	old := bcryptWait
	bcryptWait = 20 * time.Millisecond
	defer func() { bcryptWait = old }()
	for range cap(bcryptSlots) {
		bcryptSlots <- struct{}{}
	}
	for i := range FailureBurst + 5 {
		if i%3 == 2 {
			if _, code := connectV311(t, addrs["tcp"], "busy3", "alice", "right"); code != 0x03 {
				t.Fatalf("attempt %d, 3.1.1, every bcrypt slot busy: return code %#x, want 0x03 server unavailable", i, code)
			}
			continue
		}
		_, ack, _ := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "busy5", Username: "alice", Password: []byte("right")})
		if ack == nil || ack.ReasonCode != 0x89 {
			t.Fatalf("attempt %d, every bcrypt slot busy: CONNACK %+v, want 0x89 server busy", i, ack)
		}
	}
	for range cap(bcryptSlots) {
		<-bcryptSlots
	}
	if _, _, err := connectV5(t, addrs["tcp"], nil, paho.Connect{ClientID: "after", Username: "alice", Password: []byte("right")}); err != nil {
		t.Fatalf("slots free again: %v (the busy refusals spent the address's budget?)", err)
	}
}
