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

// TestFailuresBudget: a key is blocked once its burst of failures is spent,
// recovers one failure per FailureEvery, and the table stays bounded.
func TestFailuresBudget(t *testing.T) {
	f := newFailures()
	now := time.Now()
	for i := range FailureBurst {
		if f.blocked("k", now) {
			t.Fatalf("blocked after %d failures", i)
		}
		if used := f.fail("k", now); used != (i == FailureBurst-1) {
			t.Fatalf("failure %d: used up %v", i+1, used)
		}
	}
	if !f.blocked("k", now) || f.blocked("other", now) {
		t.Fatal("want k blocked and other not")
	}
	if f.blocked("k", now.Add(FailureEvery)) {
		t.Fatal("still blocked after FailureEvery")
	}
	for i := range maxTracked + 10 {
		f.fail(string(rune(i+1000)), now)
	}
	if len(f.m) > maxTracked {
		t.Fatalf("%d keys tracked, cap %d", len(f.m), maxTracked)
	}
}
