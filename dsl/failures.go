package dsl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// Failure is a typed error on the wire and in the step journal: a tag of the closed set
// below, a human message, and the tag's fields as a JSON object. It is the agent API's
// wire type, so the agent sends and receives it without a converter.
type Failure = agentapi.Failure

// TypedError is one failure of the closed set. The unexported method closes the set:
// only the types in this file implement it, so the switch in Markdown (and any other
// switch over them) can be checked for exhaustiveness.
type TypedError interface {
	error
	Failure() Failure
	isTypedError()
}

// Tags of the closed set. The type of each failure has the tag's name.
const (
	TagCheckoutFailed          = "CheckoutFailed"
	TagExecFailed              = "ExecFailed"
	TagCommandFailed           = "CommandFailed"
	TagShardsFailed            = "ShardsFailed"
	TagExecTimeout             = "ExecTimeout"
	TagContainerLaunchFailed   = "ContainerLaunchFailed"
	TagPortNeverOpened         = "PortNeverOpened"
	TagBrowserUnavailable      = "BrowserUnavailable"
	TagCacheError              = "CacheError"
	TagArtifactUploadFailed    = "ArtifactUploadFailed"
	TagStepFailed              = "StepFailed"
	TagApprovalTimedOut        = "ApprovalTimedOut"
	TagEventPayloadInvalid     = "EventPayloadInvalid"
	TagSecretsMissing          = "SecretsMissing"
	TagGitHubApiError          = "GitHubApiError"
	TagOidcSigningFailed       = "OidcSigningFailed"
	TagStsAssumeRoleFailed     = "StsAssumeRoleFailed"
	TagContainerBusy           = "ContainerBusy"
	TagAdmissionTimedOut       = "AdmissionTimedOut"
	TagAcceptanceFailed        = "AcceptanceFailed"
	TagExposePortFailed        = "ExposePortFailed"
	TagReadFileFailed          = "ReadFileFailed"
	TagRunSkipped              = "RunSkipped"
	TagBackendUnconfigured     = "BackendUnconfigured"
	TagModelCallFailed         = "ModelCallFailed"
	TagStructuredOutputInvalid = "StructuredOutputInvalid"
	TagAgentLost               = "AgentLost"
	TagRunTimedOut             = "RunTimedOut"
	TagCancelled               = "Cancelled"
	TagSandboxStartFailed      = "SandboxStartFailed"
	TagStorageFull             = "StorageFull"
)

// newByTag makes an empty failure of each tag, to rebuild one from the journal or the wire.
var newByTag = map[string]func() TypedError{
	TagCheckoutFailed:          func() TypedError { return new(CheckoutFailed) },
	TagExecFailed:              func() TypedError { return new(ExecFailed) },
	TagCommandFailed:           func() TypedError { return new(CommandFailed) },
	TagShardsFailed:            func() TypedError { return new(ShardsFailed) },
	TagExecTimeout:             func() TypedError { return new(ExecTimeout) },
	TagContainerLaunchFailed:   func() TypedError { return new(ContainerLaunchFailed) },
	TagPortNeverOpened:         func() TypedError { return new(PortNeverOpened) },
	TagBrowserUnavailable:      func() TypedError { return new(BrowserUnavailable) },
	TagCacheError:              func() TypedError { return new(CacheError) },
	TagArtifactUploadFailed:    func() TypedError { return new(ArtifactUploadFailed) },
	TagStepFailed:              func() TypedError { return new(StepFailed) },
	TagApprovalTimedOut:        func() TypedError { return new(ApprovalTimedOut) },
	TagEventPayloadInvalid:     func() TypedError { return new(EventPayloadInvalid) },
	TagSecretsMissing:          func() TypedError { return new(SecretsMissing) },
	TagGitHubApiError:          func() TypedError { return new(GitHubApiError) },
	TagOidcSigningFailed:       func() TypedError { return new(OidcSigningFailed) },
	TagStsAssumeRoleFailed:     func() TypedError { return new(StsAssumeRoleFailed) },
	TagContainerBusy:           func() TypedError { return new(ContainerBusy) },
	TagAdmissionTimedOut:       func() TypedError { return new(AdmissionTimedOut) },
	TagAcceptanceFailed:        func() TypedError { return new(AcceptanceFailed) },
	TagExposePortFailed:        func() TypedError { return new(ExposePortFailed) },
	TagReadFileFailed:          func() TypedError { return new(ReadFileFailed) },
	TagRunSkipped:              func() TypedError { return new(RunSkipped) },
	TagBackendUnconfigured:     func() TypedError { return new(BackendUnconfigured) },
	TagModelCallFailed:         func() TypedError { return new(ModelCallFailed) },
	TagStructuredOutputInvalid: func() TypedError { return new(StructuredOutputInvalid) },
	TagAgentLost:               func() TypedError { return new(AgentLost) },
	TagRunTimedOut:             func() TypedError { return new(RunTimedOut) },
	TagCancelled:               func() TypedError { return new(Cancelled) },
	TagSandboxStartFailed:      func() TypedError { return new(SandboxStartFailed) },
	TagStorageFull:             func() TypedError { return new(StorageFull) },
}

// Tags lists every tag of the closed set, in no particular order.
func Tags() []string {
	tags := make([]string, 0, len(newByTag))
	for t := range newByTag {
		tags = append(tags, t)
	}
	return tags
}

// AsFailure maps any error to its Failure: the first typed error in err's chain, or
// StepFailed with err's text when there is none. A nil error gives the zero Failure.
func AsFailure(err error) Failure {
	if err == nil {
		return Failure{}
	}
	var t TypedError
	if errors.As(err, &t) {
		return t.Failure()
	}
	var u *UnknownFailure
	if errors.As(err, &u) {
		return u.F
	}
	return (&StepFailed{Cause: err.Error()}).Failure()
}

// FromFailure rebuilds the typed error a Failure records, so a failure read back from
// the journal is matched with errors.As exactly like the original. An unknown tag (a
// newer edge or agent) gives *UnknownFailure, which keeps the Failure as it came.
func FromFailure(f Failure) error {
	mk, ok := newByTag[f.Tag]
	if !ok {
		return &UnknownFailure{F: f}
	}
	t := mk()
	if len(f.Detail) > 0 {
		_ = json.Unmarshal(f.Detail, t) // a malformed detail leaves the fields zero; the message survives
	}
	setMessage(t, f.Message)
	return t
}

// UnknownFailure carries a Failure whose tag this build does not know. It is not part of
// the closed set; AsFailure returns the Failure unchanged.
type UnknownFailure struct{ F Failure }

func (e *UnknownFailure) Error() string { return e.F.Tag + ": " + e.F.Message }

// msg keeps the message a failure was recorded with, so one rebuilt from the journal or
// from an actor reads exactly as it was written. Every failure type embeds it.
type msg struct{ text string }

func (m *msg) setText(s string) { m.text = s }

func (m *msg) or(def string) string {
	if m.text != "" {
		return m.text
	}
	return def
}

func setMessage(t TypedError, s string) {
	if m, ok := t.(interface{ setText(string) }); ok {
		m.setText(s)
	}
}

func toFailure(tag string, t TypedError) Failure {
	b, _ := json.Marshal(t) // plain fields always marshal
	return Failure{Tag: tag, Message: t.Error(), Detail: b}
}

// CheckoutFailed: the repository could not be cloned or the commit checked out.
type CheckoutFailed struct {
	msg
	Repo  string `json:"repo"`
	SHA   string `json:"sha"`
	Cause string `json:"cause"`
}

func (e *CheckoutFailed) Error() string {
	return e.or(fmt.Sprintf("checkout %s@%s: %s", e.Repo, e.SHA, e.Cause))
}
func (e *CheckoutFailed) Failure() Failure { return toFailure(TagCheckoutFailed, e) }
func (*CheckoutFailed) isTypedError()      {}

// ExecFailed: the command could not be run at all (no shell, no directory, the sandbox
// refused it). A command that ran and exited non-zero is a normal result, not this.
type ExecFailed struct {
	msg
	ExitCode   int    `json:"exitCode"`
	StderrTail string `json:"stderrTail"`
	Cause      string `json:"cause,omitempty"`
}

func (e *ExecFailed) Error() string {
	if e.Cause != "" {
		return e.or("exec failed: " + e.Cause)
	}
	return e.or(fmt.Sprintf("exec failed with exit code %d", e.ExitCode))
}
func (e *ExecFailed) Failure() Failure { return toFailure(TagExecFailed, e) }
func (*ExecFailed) isTypedError()      {}

// CommandFailed: the run's command ran and exited non-zero, and the run fails on that.
type CommandFailed struct {
	msg
	ExitCode   int    `json:"exitCode"`
	StderrTail string `json:"stderrTail"`
	DurationMs int64  `json:"durationMs,omitempty"`
	LogURI     string `json:"logUri,omitempty"`
}

func (e *CommandFailed) Error() string {
	return e.or(fmt.Sprintf("command exited with code %d", e.ExitCode))
}
func (e *CommandFailed) Failure() Failure { return toFailure(TagCommandFailed, e) }
func (*CommandFailed) isTypedError()      {}

// ShardsFailed: some shards of a fan-out did not pass; SummaryMd is the shard table.
type ShardsFailed struct {
	msg
	Failed    int    `json:"failed"`
	Total     int    `json:"total"`
	SummaryMd string `json:"summaryMd,omitempty"`
}

func (e *ShardsFailed) Error() string {
	return e.or(fmt.Sprintf("%d of %d shards failed", e.Failed, e.Total))
}
func (e *ShardsFailed) Failure() Failure { return toFailure(TagShardsFailed, e) }
func (*ShardsFailed) isTypedError()      {}

// ExecTimeout: the command ran past its timeout and was killed with its process group.
type ExecTimeout struct {
	msg
	TimeoutSec int64  `json:"timeoutSec"`
	Command    string `json:"command"`
}

func (e *ExecTimeout) Error() string {
	return e.or(fmt.Sprintf("command timed out after %ds", e.TimeoutSec))
}
func (e *ExecTimeout) Failure() Failure { return toFailure(TagExecTimeout, e) }
func (*ExecTimeout) isTypedError()      {}

// ContainerLaunchFailed: the sandbox could not be started.
type ContainerLaunchFailed struct {
	msg
	Image string `json:"image"`
	Cause string `json:"cause"`
}

func (e *ContainerLaunchFailed) Error() string {
	return e.or(fmt.Sprintf("sandbox %s failed to launch: %s", e.Image, e.Cause))
}
func (e *ContainerLaunchFailed) Failure() Failure { return toFailure(TagContainerLaunchFailed, e) }
func (*ContainerLaunchFailed) isTypedError()      {}

// PortNeverOpened: an app booted for a run never listened on its port.
type PortNeverOpened struct {
	msg
	Port       int   `json:"port"`
	TimeoutSec int64 `json:"timeoutSec"`
}

func (e *PortNeverOpened) Error() string {
	return e.or(fmt.Sprintf("port %d never opened within %ds", e.Port, e.TimeoutSec))
}
func (e *PortNeverOpened) Failure() Failure { return toFailure(TagPortNeverOpened, e) }
func (*PortNeverOpened) isTypedError()      {}

// BrowserUnavailable: no browser session could be had. Reason is quota, transient or
// session-cap; Cause says what went wrong.
type BrowserUnavailable struct {
	msg
	Reason       string `json:"reason"`
	Cause        string `json:"cause,omitempty"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`
}

func (e *BrowserUnavailable) Error() string {
	if e.Cause != "" {
		return e.or("browser unavailable (" + e.Reason + "): " + e.Cause)
	}
	return e.or("browser unavailable: " + e.Reason)
}
func (e *BrowserUnavailable) Failure() Failure { return toFailure(TagBrowserUnavailable, e) }
func (*BrowserUnavailable) isTypedError()      {}

// CacheError: restoring or saving a cache failed. Phase is restore or save.
type CacheError struct {
	msg
	Phase string `json:"phase"`
	Key   string `json:"key"`
	Cause string `json:"cause"`
}

func (e *CacheError) Error() string {
	return e.or(fmt.Sprintf("cache %s %s: %s", e.Phase, e.Key, e.Cause))
}
func (e *CacheError) Failure() Failure { return toFailure(TagCacheError, e) }
func (*CacheError) isTypedError()      {}

// ArtifactUploadFailed: an artifact could not be stored.
type ArtifactUploadFailed struct {
	msg
	Name  string `json:"name"`
	Cause string `json:"cause"`
}

func (e *ArtifactUploadFailed) Error() string {
	return e.or(fmt.Sprintf("upload artifact %s: %s", e.Name, e.Cause))
}
func (e *ArtifactUploadFailed) Failure() Failure { return toFailure(TagArtifactUploadFailed, e) }
func (*ArtifactUploadFailed) isTypedError()      {}

// StepFailed: a step failed with an error outside the typed set (or the run chose to
// fail with its own markdown summary).
type StepFailed struct {
	msg
	Step      string `json:"step"`
	Cause     string `json:"cause"`
	SummaryMd string `json:"summaryMd,omitempty"`
}

func (e *StepFailed) Error() string {
	if e.Step == "" {
		return e.or(e.Cause)
	}
	return e.or(fmt.Sprintf("step %s: %s", e.Step, e.Cause))
}
func (e *StepFailed) Failure() Failure { return toFailure(TagStepFailed, e) }
func (*StepFailed) isTypedError()      {}

// ApprovalTimedOut: a step waited for an event that never came.
type ApprovalTimedOut struct {
	msg
	EventName string `json:"eventName"`
	TimeoutMs int64  `json:"timeoutMs"`
}

func (e *ApprovalTimedOut) Error() string {
	return e.or(fmt.Sprintf("no %s event within %s", e.EventName, time.Duration(e.TimeoutMs)*time.Millisecond))
}
func (e *ApprovalTimedOut) Failure() Failure { return toFailure(TagApprovalTimedOut, e) }
func (*ApprovalTimedOut) isTypedError()      {}

// EventPayloadInvalid: the awaited event came with a payload of the wrong shape.
type EventPayloadInvalid struct {
	msg
	EventName string `json:"eventName"`
	Reason    string `json:"reason"`
}

func (e *EventPayloadInvalid) Error() string {
	return e.or(fmt.Sprintf("event %s payload invalid: %s", e.EventName, e.Reason))
}
func (e *EventPayloadInvalid) Failure() Failure { return toFailure(TagEventPayloadInvalid, e) }
func (*EventPayloadInvalid) isTypedError()      {}

// SecretsMissing: required secrets are not configured for the repository.
type SecretsMissing struct {
	msg
	Keys []string `json:"keys"`
}

func (e *SecretsMissing) Error() string {
	return e.or("missing required secrets: " + strings.Join(e.Keys, ", "))
}
func (e *SecretsMissing) Failure() Failure { return toFailure(TagSecretsMissing, e) }
func (*SecretsMissing) isTypedError()      {}

// GitHubApiError: a GitHub call failed. Reason is rate-limited, unauthorized, transient
// or other.
type GitHubApiError struct {
	msg
	Status       int    `json:"status"`
	Reason       string `json:"reason"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`
}

func (e *GitHubApiError) Error() string {
	return e.or(fmt.Sprintf("github api: %d %s", e.Status, e.Reason))
}
func (e *GitHubApiError) Failure() Failure { return toFailure(TagGitHubApiError, e) }
func (*GitHubApiError) isTypedError()      {}

// OidcSigningFailed: an OIDC token could not be signed. Reason is key-load or subtle-sign.
type OidcSigningFailed struct {
	msg
	Reason string `json:"reason"`
}

func (e *OidcSigningFailed) Error() string { return e.or("oidc signing failed: " + e.Reason) }
func (e *OidcSigningFailed) Failure() Failure {
	return toFailure(TagOidcSigningFailed, e)
}
func (*OidcSigningFailed) isTypedError() {}

// StsAssumeRoleFailed: trading an OIDC token for cloud credentials failed.
type StsAssumeRoleFailed struct {
	msg
	Provider string `json:"provider"`
	Status   int    `json:"status"`
	Reason   string `json:"reason"`
}

func (e *StsAssumeRoleFailed) Error() string {
	return e.or(fmt.Sprintf("%s assume role: %d %s", e.Provider, e.Status, e.Reason))
}
func (e *StsAssumeRoleFailed) Failure() Failure { return toFailure(TagStsAssumeRoleFailed, e) }
func (*StsAssumeRoleFailed) isTypedError()      {}

// ContainerBusy: another execution held the sandbox for the whole wait.
type ContainerBusy struct {
	msg
	ContainerID string `json:"containerId"`
	Holder      string `json:"holder"`
	WaitedMs    int64  `json:"waitedMs"`
}

func (e *ContainerBusy) Error() string {
	return e.or(fmt.Sprintf("sandbox %s stayed busy with %s for %s", e.ContainerID, e.Holder, time.Duration(e.WaitedMs)*time.Millisecond))
}
func (e *ContainerBusy) Failure() Failure { return toFailure(TagContainerBusy, e) }
func (*ContainerBusy) isTypedError()      {}

// AdmissionTimedOut: the execution waited too long for a slot in its pool and never started.
type AdmissionTimedOut struct {
	msg
	QueuedForMs int64 `json:"queuedForMs"`
	Position    int   `json:"position"`
	PoolBusy    int   `json:"poolBusy"`
	Cap         int   `json:"cap,omitempty"`
}

func (e *AdmissionTimedOut) Error() string {
	return e.or(fmt.Sprintf("timed out waiting for a sandbox slot after %s behind %d run(s) (%d in use)",
		(time.Duration(e.QueuedForMs) * time.Millisecond).Round(time.Second), e.Position, e.PoolBusy))
}
func (e *AdmissionTimedOut) Failure() Failure { return toFailure(TagAdmissionTimedOut, e) }
func (*AdmissionTimedOut) isTypedError()      {}

// AcceptanceFailed: acceptance checks ran and did not pass; SummaryMd says which.
type AcceptanceFailed struct {
	msg
	ExitCode  int    `json:"exitCode"`
	SummaryMd string `json:"summaryMd,omitempty"`
}

func (e *AcceptanceFailed) Error() string {
	return e.or(fmt.Sprintf("acceptance failed with exit code %d", e.ExitCode))
}
func (e *AcceptanceFailed) Failure() Failure { return toFailure(TagAcceptanceFailed, e) }
func (*AcceptanceFailed) isTypedError()      {}

// ExposePortFailed: a sandbox port could not be given a public preview URL.
type ExposePortFailed struct {
	msg
	Port  int    `json:"port"`
	Cause string `json:"cause"`
}

func (e *ExposePortFailed) Error() string {
	return e.or(fmt.Sprintf("expose port %d: %s", e.Port, e.Cause))
}
func (e *ExposePortFailed) Failure() Failure { return toFailure(TagExposePortFailed, e) }
func (*ExposePortFailed) isTypedError()      {}

// ReadFileFailed: a file in the sandbox could not be read.
type ReadFileFailed struct {
	msg
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (e *ReadFileFailed) Error() string {
	return e.or(fmt.Sprintf("read %s: %s", e.Path, e.Message))
}
func (e *ReadFileFailed) Failure() Failure { return toFailure(TagReadFileFailed, e) }
func (*ReadFileFailed) isTypedError()      {}

// RunSkipped: the run decided there was nothing to do (a neutral check).
type RunSkipped struct {
	msg
	Reason string `json:"reason"`
}

func (e *RunSkipped) Error() string    { return e.or("skipped: " + e.Reason) }
func (e *RunSkipped) Failure() Failure { return toFailure(TagRunSkipped, e) }
func (*RunSkipped) isTypedError()      {}

// BackendUnconfigured: a model backend lacks the configuration it needs.
type BackendUnconfigured struct {
	msg
	Backend string   `json:"backend"`
	Missing []string `json:"missing"`
}

func (e *BackendUnconfigured) Error() string {
	return e.or(fmt.Sprintf("backend %s is not configured: missing %s", e.Backend, strings.Join(e.Missing, ", ")))
}
func (e *BackendUnconfigured) Failure() Failure { return toFailure(TagBackendUnconfigured, e) }
func (*BackendUnconfigured) isTypedError()      {}

// ModelCallFailed: a model call failed. Reason is auth-failed, rate-limited,
// bad-response, timeout or unknown.
type ModelCallFailed struct {
	msg
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e *ModelCallFailed) Error() string {
	return e.or(fmt.Sprintf("model call failed (%s): %s", e.Reason, e.Message))
}
func (e *ModelCallFailed) Failure() Failure { return toFailure(TagModelCallFailed, e) }
func (*ModelCallFailed) isTypedError()      {}

// StructuredOutputInvalid: a model's structured output did not match its schema.
type StructuredOutputInvalid struct {
	msg
	Surface string `json:"surface"`
	Reason  string `json:"reason"`
}

func (e *StructuredOutputInvalid) Error() string {
	return e.or(fmt.Sprintf("structured output for %s invalid: %s", e.Surface, e.Reason))
}
func (e *StructuredOutputInvalid) Failure() Failure {
	return toFailure(TagStructuredOutputInvalid, e)
}
func (*StructuredOutputInvalid) isTypedError() {}

// AgentLost: the agent stopped heartbeating on every attempt (created by the run actor).
type AgentLost struct {
	msg
	Attempts    int   `json:"attempts"`
	SilentForMs int64 `json:"silentForMs"`
}

func (e *AgentLost) Error() string {
	return e.or(fmt.Sprintf("the agent stopped responding (%d attempt(s); last one silent for %s)",
		e.Attempts, (time.Duration(e.SilentForMs) * time.Millisecond).Round(time.Second)))
}
func (e *AgentLost) Failure() Failure { return toFailure(TagAgentLost, e) }
func (*AgentLost) isTypedError()      {}

// SandboxStartFailed: the platform refused to start the run's sandbox on every try
// (the Container class is missing, the image could not be pulled, the instance limit
// was reached; locally, the agent binary would not start). Created by the run actor
// from the start failures the edge reports, so the run ends at once instead of after
// the agent's boot grace.
type SandboxStartFailed struct {
	msg
	Sandbox  string `json:"sandbox"`
	Pool     string `json:"pool"`
	Attempts int    `json:"attempts"`
	Cause    string `json:"cause"`
}

func (e *SandboxStartFailed) Error() string {
	return e.or(fmt.Sprintf("sandbox %s (pool %s) could not start after %d attempt(s): %s", e.Sandbox, e.Pool, e.Attempts, e.Cause))
}
func (e *SandboxStartFailed) Failure() Failure { return toFailure(TagSandboxStartFailed, e) }
func (*SandboxStartFailed) isTypedError()      {}

// RunTimedOut: the execution ran past its run's MaxDuration.
type RunTimedOut struct {
	msg
	MaxDurationSec int64 `json:"maxDurationSec"`
}

func (e *RunTimedOut) Error() string {
	return e.or(fmt.Sprintf("the run exceeded its limit of %s", time.Duration(e.MaxDurationSec)*time.Second))
}
func (e *RunTimedOut) Failure() Failure { return toFailure(TagRunTimedOut, e) }
func (*RunTimedOut) isTypedError()      {}

// Cancelled: someone cancelled the execution.
type Cancelled struct {
	msg
	Reason string `json:"reason"`
}

func (e *Cancelled) Error() string {
	if e.Reason == "" {
		return e.or("cancelled")
	}
	return e.or(e.Reason)
}
func (e *Cancelled) Failure() Failure { return toFailure(TagCancelled, e) }
func (*Cancelled) isTypedError()      {}

// StorageFull: durable storage refused a write past its retries (a full disk, or a
// store that stayed unreachable), so part of the run's record is missing: What names
// it (e.g. "log exec.ndjson"); Lost counts the bytes that could not be stored.
type StorageFull struct {
	msg
	What  string `json:"what"`
	Lost  int64  `json:"lostBytes,omitempty"`
	Cause string `json:"cause"`
}

func (e *StorageFull) Error() string {
	if e.Lost > 0 {
		return e.or(fmt.Sprintf("storage full: %d bytes of %s could not be stored: %s", e.Lost, e.What, e.Cause))
	}
	return e.or(fmt.Sprintf("storage full: %s could not be stored: %s", e.What, e.Cause))
}
func (e *StorageFull) Failure() Failure { return toFailure(TagStorageFull, e) }
func (*StorageFull) isTypedError()      {}
