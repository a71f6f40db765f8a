package natsjs_test

import (
	"context"
	"testing"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/counciltest"
)

// TestStoreContract runs the contract every council.Store passes (the
// in-memory fake passes the same suite) against the JetStream KV store.
func TestStoreContract(t *testing.T) {
	counciltest.TestStore(t, func(t *testing.T) counciltest.StoreUnderTest {
		_, _, js := natstest.Start(t)
		ctx := context.Background()
		if err := natsjs.Setup(ctx, js, natsjs.DefaultTopology()); err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(ctx, natsjs.DefaultBucket)
		if err != nil {
			t.Fatal(err)
		}
		s, err := natsjs.OpenStore(ctx, js) // the state and the index buckets, as execute opens them
		if err != nil {
			t.Fatal(err)
		}
		corrupt := func(t *testing.T, id string) {
			if _, err := kv.Put(ctx, id, []byte(`{"schema_version":2,"id":"`+id+`","work":"not a list"}`)); err != nil {
				t.Fatal(err)
			}
		}
		return counciltest.StoreUnderTest{Store: s, Corrupt: corrupt}
	})
}
