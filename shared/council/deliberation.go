package council

// Deliberation is the aggregate that runs one deliberation. (Being written.)
type Deliberation struct {
	ID string
}
