//go:build !unix

package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// Without process groups only the shell itself can be killed.
func setProcessGroup(*exec.Cmd) {}

func killGroup(pid int, _ syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
