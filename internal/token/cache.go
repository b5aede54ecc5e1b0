package token

import (
	"sync"
	"sync/atomic"
	"time"
	"unique"
)

// Defaults for NewCache: sized for ~100k live tokens (Better Auth's last 15 minutes).
const (
	DefaultCacheEntries = 100_000
	DefaultCacheBytes   = 64 << 20
	cacheShards         = 64
)

// Cache remembers tokens that verified, keyed by the SHA-256 of the token, so that a
// browser sending the same token on every call pays for one signature check, not
// one per request. It is safe for concurrent use and takes no global lock: entries
// live in 64 shards, each with its own read-write lock.
//
// An entry is used only while everything that made the token valid still holds: its
// validity window (exp, nbf and iat with the leeway), its issuer's configuration, and
// its key, which must still be the one the issuer's JWKS lists under that kid. A
// failed verification is never stored.
type Cache struct {
	shards             [cacheShards]cacheShard
	maxEntries, maxMem int // per shard
}

type cacheShard struct {
	mu      sync.RWMutex
	m       map[[32]byte]*cacheEntry
	bytes   int
	hits    atomic.Uint64
	misses  atomic.Uint64
	evicted atomic.Uint64
	_       [64]byte // keep shards' counters on separate cache lines
}

type cacheEntry struct {
	claims              Claims
	fingerprint         unique.Handle[string] // the issuer's configuration, interned: 8 bytes, not 16
	notBefore, notAfter int64                 // unix nanoseconds, leeway included
}

// size is what the entry is charged in its shard's byte budget; the claims are
// immutable, so it is the same when the entry leaves as when it came in.
func (e *cacheEntry) size() int { return e.claims.Values.size() }

// CacheConfig sizes a Cache; non-positive limits take the defaults.
type CacheConfig struct {
	// MaxEntries bounds the tokens held (DefaultCacheEntries).
	MaxEntries int
	// MaxBytes bounds the memory of their claims, approximately (DefaultCacheBytes).
	MaxBytes int
}

// NewCache returns an empty Cache.
func NewCache(cfg CacheConfig) *Cache {
	maxEntries, maxBytes := cfg.MaxEntries, cfg.MaxBytes
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	c := &Cache{maxEntries: max(1, maxEntries/cacheShards), maxMem: max(1, maxBytes/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*cacheEntry)
	}
	return c
}

func (c *Cache) shard(h *[32]byte) *cacheShard { return &c.shards[h[0]%cacheShards] }

func (c *Cache) get(h *[32]byte) *cacheEntry {
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[*h]
	s.mu.RUnlock()
	if e == nil {
		s.misses.Add(1)
	} else {
		s.hits.Add(1)
	}
	return e
}

// drop removes h if it still maps to e (an entry found stale on use).
func (c *Cache) drop(h *[32]byte, e *cacheEntry) {
	s := c.shard(h)
	s.mu.Lock()
	if s.m[*h] == e {
		delete(s.m, *h)
		s.bytes -= e.size()
	}
	s.mu.Unlock()
}

func (c *Cache) put(h *[32]byte, e *cacheEntry, now int64) {
	s := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[*h]; old != nil {
		// Out of the map too, so that eviction cannot charge it back twice.
		delete(s.m, *h)
		s.bytes -= old.size()
	}
	for len(s.m) >= c.maxEntries || s.bytes+e.size() > c.maxMem {
		if !s.evictOne(now) {
			break
		}
	}
	s.m[*h] = e
	s.bytes += e.size()
	s.dropExpired(now)
}

// dropExpired removes what expired among a few entries, even when the shard is
// not full: an expired entry still holds its claims, and what the engine keeps
// with them (its allow answers, charged to their own budget), until then. Each
// insertion looks at a few, so the expired go at the pace new tokens come.
func (s *cacheShard) dropExpired(now int64) {
	n := 0
	for k, e := range s.m {
		if e.notAfter < now {
			s.bytes -= e.size()
			delete(s.m, k)
			s.evicted.Add(1)
		}
		if n++; n >= 4 {
			return
		}
	}
}

// evictOne removes an expired entry among a few looked at, else the first one seen.
// Go's map iteration starts at a random place, which makes this a random eviction:
// no bookkeeping on the hit path, and good enough for tokens that all live 15 minutes.
func (s *cacheShard) evictOne(now int64) bool {
	var victim [32]byte
	found, n := false, 0
	for k, e := range s.m {
		if !found {
			victim, found = k, true
		}
		if e.notAfter < now {
			victim = k
			break
		}
		if n++; n >= 8 {
			break
		}
	}
	if !found {
		return false
	}
	s.bytes -= s.m[victim].size()
	delete(s.m, victim)
	s.evicted.Add(1)
	return true
}

// CacheStats are a Cache's counters.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	Entries, Bytes          int
}

// Stats sums the shards' counters.
func (c *Cache) Stats() CacheStats {
	var st CacheStats
	for i := range c.shards {
		s := &c.shards[i]
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		st.Evictions += s.evicted.Load()
		s.mu.RLock()
		st.Entries += len(s.m)
		st.Bytes += s.bytes
		s.mu.RUnlock()
	}
	return st
}

// validity returns the window in which a verified token stays acceptable, the same
// one Verify applies: from max(nbf, iat) minus the leeway to exp plus the leeway.
func validity(exp, nbf, iat time.Time, leeway time.Duration) (from, until int64) {
	start := nbf
	if iat.After(start) {
		start = iat
	}
	if start.IsZero() {
		from = 0
	} else {
		from = start.Add(-leeway).UnixNano()
	}
	return from, exp.Add(leeway).UnixNano()
}

// entryOverhead estimates what an entry costs beyond its claims' encoding: the
// entry and Claims structs (128 bytes) and its share of the shard's map (about 56).
const entryOverhead = 184
