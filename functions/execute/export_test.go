package execute

// Queued is how many Apply calls for deliberation id wait in o's queue for
// their group (tests wait on it instead of sleeping).
func Queued(o *Outbox, id string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queues[id])
}
