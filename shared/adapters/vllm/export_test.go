package vllm

// Test hooks, exported to the package's external tests only.
var (
	WithJitter = withJitter
	WithSleep  = withSleep
)
