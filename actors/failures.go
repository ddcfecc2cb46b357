package actors

import (
	"encoding/json"
	"fmt"
	"time"
)

// Tags of the failures the actors themselves create. The full closed set, and the
// check-run markdown for each, lives in dsl.
const (
	TagAdmissionTimedOut  = "AdmissionTimedOut"
	TagContainerBusy      = "ContainerBusy"
	TagAgentLost          = "AgentLost"
	TagRunTimedOut        = "RunTimedOut"
	TagCancelled          = "Cancelled"
	TagSandboxStartFailed = "SandboxStartFailed"
)

func failure(tag, msg string, detail any) *Failure {
	b, _ := json.Marshal(detail) // maps of plain values always marshal
	return &Failure{Tag: tag, Message: msg, Detail: b}
}

// AdmissionTimedOut: the execution waited too long for a slot in its pool.
func AdmissionTimedOut(queuedFor time.Duration, position, busy, cap int) *Failure {
	return failure(TagAdmissionTimedOut,
		fmt.Sprintf("timed out waiting for a sandbox slot after %s behind %d run(s) (%d/%d in use)", queuedFor.Round(time.Second), position, busy, cap),
		map[string]any{"queuedForMs": queuedFor.Milliseconds(), "position": position, "poolBusy": busy, "cap": cap})
}

// ContainerBusy: another execution held the sandbox for the whole wait.
func ContainerBusy(sandbox, holder string, waited time.Duration) *Failure {
	return failure(TagContainerBusy,
		fmt.Sprintf("sandbox %s stayed busy with %s for %s", sandbox, holder, waited.Round(time.Second)),
		map[string]any{"containerId": sandbox, "holder": holder, "waitedMs": waited.Milliseconds()})
}

// AgentLost: the agent stopped heartbeating on every attempt.
func AgentLost(attempts int, silentFor time.Duration) *Failure {
	return failure(TagAgentLost,
		fmt.Sprintf("the agent stopped responding (%d attempt(s); last one silent for %s)", attempts, silentFor.Round(time.Second)),
		map[string]any{"attempts": attempts, "silentForMs": silentFor.Milliseconds()})
}

// SandboxStartFailed: the platform refused to start the sandbox on every try.
func SandboxStartFailed(sandbox, pool string, attempts int, cause string) *Failure {
	return failure(TagSandboxStartFailed,
		fmt.Sprintf("sandbox %s (pool %s) could not start after %d attempt(s): %s", sandbox, pool, attempts, cause),
		map[string]any{"sandbox": sandbox, "pool": pool, "attempts": attempts, "cause": cause})
}

// RunTimedOut: the execution ran past its run's maxDurationSec.
func RunTimedOut(limit time.Duration) *Failure {
	return failure(TagRunTimedOut,
		fmt.Sprintf("the run exceeded its limit of %s", limit),
		map[string]any{"maxDurationSec": int64(limit / time.Second)})
}

// Cancelled: someone cancelled the execution.
func Cancelled(reason string) *Failure {
	if reason == "" {
		reason = "cancelled"
	}
	return failure(TagCancelled, reason, map[string]any{"reason": reason})
}
