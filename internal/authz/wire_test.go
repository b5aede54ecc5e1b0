package authz_test

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/betterauth-extauthz/extauthz/internal/authz"
	"github.com/betterauth-extauthz/extauthz/internal/engine/enginetest"
	"github.com/betterauth-extauthz/extauthz/internal/token"
	"github.com/betterauth-extauthz/extauthz/internal/tokentest"
)

// TestGRPCMemoisedAnswer: the bytes a warm token's allow is sent as decode to the
// very response built for it afresh, for each of two users, and a deny between
// two allows is still a deny.
func TestGRPCMemoisedAnswer(t *testing.T) {
	e, key := enginetest.New(t, doc, now, nil, token.NewCache(token.CacheConfig{}))
	cfg := authz.Config{Engine: e, Realm: "tasks"}
	c, _ := served(t, cfg)
	fresh := mustGRPC(t, authz.Config{Engine: e, Realm: "tasks"}) // Check: never memoised
	tokA := key.Sign(tokentest.Claims(iss, "userA", uuidA, now), nil)
	tokB := key.Sign(tokentest.Claims(iss, "userB", uuidB, now), nil)
	call := func(tok, owner string) *authv3.CheckResponse {
		t.Helper()
		req := checkRequest("GET", "/api/"+owner+"/tasks", map[string]string{"authorization": "Bearer " + tok})
		resp, err := c.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fresh.Check(context.Background(), req)
		if !proto.Equal(resp, want) {
			t.Fatalf("served %v\nwant   %v", resp, want)
		}
		return resp
	}
	for range 5 {
		if call(tokA, uuidA).GetOkResponse() == nil || call(tokB, uuidB).GetOkResponse() == nil {
			t.Fatal("owner denied")
		}
		if call(tokA, uuidB).GetDeniedResponse() == nil {
			t.Fatal("A reached B's tasks")
		}
	}
	a, b := call(tokA, uuidA), call(tokB, uuidB)
	if proto.Equal(a, b) {
		t.Fatal("two users got the same answer")
	}
	if got := a.GetDynamicMetadata().GetFields()["uuid"].GetStringValue(); got != uuidA {
		t.Fatalf("A's metadata uuid %q", got)
	}
}
