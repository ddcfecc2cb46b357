//go:build unix && !linux

package browser

import "syscall"

func setParentDeath(*syscall.SysProcAttr) {}
