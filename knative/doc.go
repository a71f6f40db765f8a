// Package knative holds council's Knative deployment: manifests under base/
// and overlays/, and tests that validate them against Knative's API types.
package knative
