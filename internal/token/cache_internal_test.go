package token

import "testing"

// TestOverwriteChargesOnce: a token put twice (two requests bringing it at once
// into a full shard) leaves its shard charged for one entry, and no other entry
// evicted for it.
func TestOverwriteChargesOnce(t *testing.T) {
	c := NewCache(CacheConfig{MaxEntries: 2 * cacheShards}) // two entries a shard
	entry := func(sub string) *cacheEntry {
		set, _ := newClaimSet(map[string]any{"sub": sub}, nil, sub)
		return &cacheEntry{claims: Claims{Subject: sub, Values: set}, notAfter: 1 << 62}
	}
	var other, h [32]byte
	other[1] = 1 // the same shard as h (h[0] picks it), another token
	c.put(&other, entry("other"), 0)
	c.put(&h, entry("first"), 0)
	second := entry("second")
	c.put(&h, second, 0)
	st := c.Stats()
	if want := entry("other").size() + second.size(); st.Entries != 2 || st.Bytes != want || st.Evictions != 0 {
		t.Fatalf("after an overwrite: %d entries, %d bytes, %d evictions; want 2, %d, 0", st.Entries, st.Bytes, st.Evictions, want)
	}
	if c.get(&h) != second || c.get(&other) == nil {
		t.Fatal("the overwrite did not keep both tokens, the second entry for h")
	}
}
