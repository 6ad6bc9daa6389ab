package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the reference: the smallest sample with at least q of all
// samples at or below it.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	i := max(int(math.Ceil(q*float64(len(sorted)))), 1) - 1
	return sorted[i]
}

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"small exact", func() time.Duration { return time.Duration(rng.IntN(200)) }},
		{"log-uniform 1µs..10s", func() time.Duration {
			return time.Duration(math.Exp(rng.Float64()*math.Log(1e7)) * 1e3)
		}},
		{"bimodal", func() time.Duration {
			if rng.IntN(100) < 95 {
				return time.Duration(200_000 + rng.IntN(50_000))
			}
			return time.Duration(40_000_000 + rng.IntN(10_000_000))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			samples := make([]time.Duration, 100_000)
			for i := range samples {
				samples[i] = tc.gen()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.Quantile(q), nearestRank(samples, q)
				// The histogram reports the top of the sample's bucket: never
				// below it, and at most 1/128 above.
				if got < want || float64(got-want) > float64(want)/subCount {
					t.Errorf("q%v = %v, sorted samples say %v", q, got, want)
				}
			}
			if s := h.Summary(); s.Count != uint64(len(samples)) || s.Max != ms(samples[len(samples)-1]) || s.Min != ms(samples[0]) {
				t.Errorf("summary count/min/max = %d/%v/%v, want %d/%v/%v", s.Count, s.Min, s.Max,
					len(samples), ms(samples[0]), ms(samples[len(samples)-1]))
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value lies in its bucket, buckets are ordered, and the bucket top
	// is within 1/128 of the value.
	prevTop := uint64(0)
	for i := 1; i < numBuckets; i++ {
		top := bucketTop(i)
		if top <= prevTop && i < numBuckets-1 {
			t.Fatalf("bucket %d top %d not above bucket %d top %d", i, top, i-1, prevTop)
		}
		if bucketOf(prevTop+1) != i || bucketOf(top) != i {
			t.Fatalf("bucket %d spans %d..%d but bucketOf gives %d, %d", i, prevTop+1, top, bucketOf(prevTop+1), bucketOf(top))
		}
		if lo := prevTop + 1; float64(top-lo) > float64(lo)/subCount {
			t.Fatalf("bucket %d is %d..%d: wider than 1/128", i, lo, top)
		}
		prevTop = top
	}
	if bucketOf(math.MaxUint64) != numBuckets-1 {
		t.Errorf("max value in bucket %d, want the last", bucketOf(math.MaxUint64))
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Summary() != (Latency{}) {
		t.Error("an empty histogram should report zeros")
	}
	h.Record(-time.Second)
	if h.Quantile(1) != 0 || h.Count() != 1 {
		t.Errorf("a negative duration should count as 0, got %v", h.Quantile(1))
	}
}
