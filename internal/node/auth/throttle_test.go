package auth

import (
	"errors"
	"testing"
	"time"

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

// TestBudgets: a key's attempts are refused once its burst is used, a
// success gives its attempt back, the budget refills one per FailureEvery,
// and the table stays bounded.
func TestBudgets(t *testing.T) {
	b := newBudgets()
	now := time.Now()
	for i := range FailureBurst {
		if !b.take("k", now) {
			t.Fatalf("refused after %d attempts", i)
		}
	}
	if b.take("k", now) || !b.take("other", now) {
		t.Fatal("want k refused and other allowed")
	}
	if !b.spent("k", now) || b.spent("k", now) {
		t.Fatal("spent should report once per episode")
	}
	b.give("k", now) // a success
	if !b.take("k", now) || b.take("k", now) {
		t.Fatal("a success should give back exactly one attempt")
	}
	if !b.take("k", now.Add(FailureEvery)) {
		t.Fatal("still refused after FailureEvery")
	}
	for i := range maxTracked + 10 {
		b.take(string(rune(i+1000)), now)
	}
	if len(b.m) > maxTracked {
		t.Fatalf("%d keys tracked, cap %d", len(b.m), maxTracked)
	}
}
