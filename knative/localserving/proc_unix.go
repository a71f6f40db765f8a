//go:build unix

package localserving

import (
	"errors"
	"os/exec"
	"syscall"
)

// ownGroup makes cmd the leader of a process group of its own, so that
// signals reach whatever it starts too, as a container's do.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to the process group led by pid; a group already
// gone is no error.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
