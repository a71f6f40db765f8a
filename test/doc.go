// Package test holds council's end-to-end tests: all functions over real
// NATS JetStream against a real LLM server and a real Ray head.
package test
