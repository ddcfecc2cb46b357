// Package kinds builds any of the three actors from its address: the factory both
// hosts use.
package kinds

import (
	"fmt"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/admission"
	"github.com/flare-dispatch/flare-dispatch/actors/lease"
	"github.com/flare-dispatch/flare-dispatch/actors/run"
)

// Config is every actor's configuration.
type Config struct {
	Admission admission.Config
	Lease     lease.Config
	Run       run.Config
}

// DefaultConfig is the contract's numbers.
func DefaultConfig() Config {
	return Config{Admission: admission.DefaultConfig(), Lease: lease.DefaultConfig(), Run: run.DefaultConfig()}
}

// Factory returns the actors.Factory for cfg.
func Factory(cfg Config) actors.Factory {
	return func(a actors.Addr) (actors.Actor, error) {
		switch a.Kind {
		case actors.KindRun:
			return run.New(a.Key, cfg.Run), nil
		case actors.KindAdmission:
			return admission.New(a.Key, cfg.Admission), nil
		case actors.KindLease:
			return lease.New(a.Key, cfg.Lease), nil
		}
		return nil, fmt.Errorf("actor %s: unknown kind", a)
	}
}
