package kustomized_test

import (
	"strings"
	"testing"

	"council.dev/knative/kustomized"
)

// TestLoadDeployables loads every kustomization council deploys and reads
// the Trigger retry count each sets: 5 in base, 1 in the dev overlay.
func TestLoadDeployables(t *testing.T) {
	tests := []struct {
		dir   string
		retry int32
	}{
		{"../base", 5},
		{"../overlays/dev", 1},
		{"../overlays/prod", 8},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			m, err := kustomized.Load(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Brokers) != 1 || len(m.Services) == 0 || len(m.PingSources) != 1 || len(m.SinkBindings) == 0 {
				t.Fatalf("%d Brokers, %d Services, %d PingSources, %d SinkBindings; want 1, some, 1, some",
					len(m.Brokers), len(m.Services), len(m.PingSources), len(m.SinkBindings))
			}
			if len(m.Triggers) == 0 {
				t.Fatal("no Triggers")
			}
			for _, tr := range m.Triggers {
				d := tr.Spec.Delivery
				if d == nil || d.Retry == nil {
					t.Errorf("Trigger %s: no delivery retry", tr.Name)
					continue
				}
				if *d.Retry != tt.retry {
					t.Errorf("Trigger %s: retry %d; want %d", tr.Name, *d.Retry, tt.retry)
				}
			}
		})
	}
}

// TestLoadRejects checks that a directory that is no kustomization, and a
// document of a kind council does not deploy, are clear errors.
func TestLoadRejects(t *testing.T) {
	if _, err := kustomized.Load(t.TempDir()); err == nil {
		t.Error("Load of an empty directory: no error")
	}
	_, err := kustomized.Decode([]kustomized.Object{{
		APIVersion: "apps/v1", Kind: "Deployment", Namespace: "council", Name: "x",
		YAML: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"),
	}})
	if err == nil || !strings.Contains(err.Error(), "unexpected kind") {
		t.Errorf("Decode of a Deployment: %v; want an unexpected kind error", err)
	}
	_, err = kustomized.Decode([]kustomized.Object{{
		APIVersion: "eventing.knative.dev/v1", Kind: "Trigger", Name: "x",
		YAML: []byte("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: x\nspec:\n  brokr: council\n"),
	}})
	if err == nil || !strings.Contains(err.Error(), "brokr") {
		t.Errorf("Decode of a Trigger with an unknown field: %v; want a strict decode error", err)
	}
}
