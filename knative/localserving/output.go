package localserving

import (
	"bufio"
	"fmt"
	"io"
	"sync"
)

// output writes the lines of every instance to one writer, each prefixed
// with its instance's name, whole lines at a time.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

// copyLines copies r to o line by line with prefix until r ends.
func (o *output) copyLines(prefix string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		o.mu.Lock()
		_, _ = fmt.Fprintf(o.w, "[%s] %s\n", prefix, sc.Bytes())
		o.mu.Unlock()
	}
	// A line over the buffer ends the scan: drain the rest so that the
	// instance never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}
