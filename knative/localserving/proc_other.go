//go:build !unix

package localserving

import (
	"os"
	"os/exec"
	"syscall"
)

// ownGroup does nothing where there are no process groups: only the
// instance's own process is signalled.
func ownGroup(*exec.Cmd) {}

// signalGroup kills the process pid (no SIGTERM there: every stop kills).
func signalGroup(pid int, _ syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
