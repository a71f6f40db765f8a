package natsjs

import "time"

// Backoff exposes the redelivery delay to the tests.
func (c *Consumer) Backoff(delivered uint64) time.Duration { return c.backoff(delivered) }
