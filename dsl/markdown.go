package dsl

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the text Markdown puts in a check-run summary.
const (
	// MaxStderrTail is how much of a command's stderr a summary shows (its end).
	MaxStderrTail = 4000
	// maxText bounds any other single value (a cause, a message) in a summary.
	maxText = 2000
	// maxSummaryMd bounds a run's own markdown summary inside a failure.
	maxSummaryMd = 60000
)

// Markdown renders a failure for a check-run summary. It is the one place that does:
// the switch covers every type of the closed set (TestMarkdownCoversEveryTag keeps it
// so), and a tag this build does not know gets a generic rendering of its message.
func Markdown(f Failure) string {
	switch e := FromFailure(f).(type) {
	case *CheckoutFailed:
		return fmt.Sprintf("**Checkout failed** for %s at %s.\n\n%s",
			code(e.Repo), code(shortSHA(e.SHA)), fence(clip(e.Cause, maxText)))
	case *ExecFailed:
		s := fmt.Sprintf("**The command could not run** (exit code %d).", e.ExitCode)
		if e.Cause != "" {
			s += "\n\n" + text(e.Cause)
		}
		return s + stderrBlock(e.StderrTail)
	case *CommandFailed:
		return fmt.Sprintf("**The command failed with exit code %d.**", e.ExitCode) + stderrBlock(e.StderrTail)
	case *ShardsFailed:
		s := fmt.Sprintf("**%d of %d shard(s) failed.**", e.Failed, e.Total)
		if e.SummaryMd != "" {
			s += "\n\n" + clip(e.SummaryMd, maxSummaryMd)
		}
		return s
	case *ExecTimeout:
		return fmt.Sprintf("⏱ **The command timed out** after %s and was stopped with everything it started.\n\n%s",
			seconds(e.TimeoutSec), fence(clip(e.Command, maxText)))
	case *ContainerLaunchFailed:
		return fmt.Sprintf("**The sandbox could not start** (image %s).\n\n%s", code(e.Image), fence(clip(e.Cause, maxText)))
	case *PortNeverOpened:
		return fmt.Sprintf("**The app never opened port %d** within %s.", e.Port, seconds(e.TimeoutSec))
	case *BrowserUnavailable:
		s := fmt.Sprintf("**No browser session was available** (%s).", text(e.Reason))
		if e.RetryAfterMs > 0 {
			s += fmt.Sprintf(" Retry after %s.", millis(e.RetryAfterMs))
		}
		if e.Cause != "" {
			s += "\n\n" + fence(clip(e.Cause, maxText))
		}
		return s
	case *CacheError:
		return fmt.Sprintf("**Cache %s failed** for key %s.\n\n%s", text(e.Phase), code(e.Key), fence(clip(e.Cause, maxText)))
	case *ArtifactUploadFailed:
		return fmt.Sprintf("**Uploading artifact %s failed.**\n\n%s", code(e.Name), fence(clip(e.Cause, maxText)))
	case *StepFailed:
		if e.SummaryMd != "" {
			return clip(e.SummaryMd, maxSummaryMd)
		}
		if e.Step == "" {
			return "**The run failed.**\n\n" + fence(clip(e.Cause, maxText))
		}
		return fmt.Sprintf("**Step %s failed.**\n\n%s", code(e.Step), fence(clip(e.Cause, maxText)))
	case *ApprovalTimedOut:
		return fmt.Sprintf("**No %s event arrived** within %s.", code(e.EventName), millis(e.TimeoutMs))
	case *EventPayloadInvalid:
		return fmt.Sprintf("**The %s event had an invalid payload:** %s", code(e.EventName), text(e.Reason))
	case *SecretsMissing:
		keys := make([]string, len(e.Keys))
		for i, k := range e.Keys {
			keys[i] = code(k)
		}
		return fmt.Sprintf("🔑 **Required secret(s) missing:** %s.\n\nConfigure them for this repository and dispatch again; the command did not run.",
			strings.Join(keys, ", "))
	case *GitHubApiError:
		s := fmt.Sprintf("**A GitHub API call failed** (HTTP %d, %s).", e.Status, text(e.Reason))
		if e.RetryAfterMs > 0 {
			s += fmt.Sprintf(" Retry after %s.", millis(e.RetryAfterMs))
		}
		return s
	case *OidcSigningFailed:
		return fmt.Sprintf("**Signing an OIDC token failed** (%s).", text(e.Reason))
	case *StsAssumeRoleFailed:
		return fmt.Sprintf("**Assuming a role with %s failed** (HTTP %d): %s", text(e.Provider), e.Status, text(e.Reason))
	case *ContainerBusy:
		return fmt.Sprintf("⏳ **The sandbox %s stayed busy** with execution %s for %s, so this run never started. This is not a test failure; dispatch it again.",
			code(e.ContainerID), code(e.Holder), millis(e.WaitedMs))
	case *AdmissionTimedOut:
		return fmt.Sprintf("⏳ Timed out waiting for a sandbox slot — queued for %d min behind %d run(s) (%d sandbox slot(s) in use). "+
			"The run never started, so this is not a test failure; dispatch it again when the pool is less busy.",
			minutes(e.QueuedForMs), e.Position, e.PoolBusy)
	case *AcceptanceFailed:
		if e.SummaryMd != "" {
			return clip(e.SummaryMd, maxSummaryMd)
		}
		return fmt.Sprintf("**Acceptance checks failed** (exit code %d).", e.ExitCode)
	case *ExposePortFailed:
		return fmt.Sprintf("**Exposing port %d failed.**\n\n%s", e.Port, fence(clip(e.Cause, maxText)))
	case *ReadFileFailed:
		return fmt.Sprintf("**Reading %s failed:** %s", code(e.Path), text(e.Message))
	case *RunSkipped:
		return "⊘ Skipped: " + text(e.Reason)
	case *BackendUnconfigured:
		keys := make([]string, len(e.Missing))
		for i, k := range e.Missing {
			keys[i] = code(k)
		}
		return fmt.Sprintf("**The %s model backend is not configured:** missing %s.", code(e.Backend), strings.Join(keys, ", "))
	case *ModelCallFailed:
		return fmt.Sprintf("**A model call failed** (%s): %s", text(e.Reason), text(e.Message))
	case *StructuredOutputInvalid:
		return fmt.Sprintf("**The model's structured output for %s was invalid:** %s", code(e.Surface), text(e.Reason))
	case *AgentLost:
		return fmt.Sprintf("**The agent stopped responding** (%d attempt(s); the last was silent for %s). The sandbox may have run out of memory or been restarted.",
			e.Attempts, millis(e.SilentForMs))
	case *SandboxStartFailed:
		return fmt.Sprintf("**The sandbox could not start** (%s, pool %s; %d attempt(s)).\n\n%s\n\n"+
			"To fix: on Cloudflare, check that the deploy has Containers enabled (Workers Paid), that the "+
			"sandbox image was built and pushed (`wrangler deploy` builds it) and that `max_instances` is not "+
			"exhausted; locally, check that `flare up` finds its agent binary. Then dispatch the run again.",
			code(e.Sandbox), code(e.Pool), e.Attempts, fence(clip(e.Cause, maxText)))
	case *RunTimedOut:
		return fmt.Sprintf("⏱ **The run exceeded its limit** of %s and was stopped.", seconds(e.MaxDurationSec))
	case *Cancelled:
		return "⊘ **Cancelled:** " + text(e.Error())
	case *StorageFull:
		return fmt.Sprintf("**Storage refused a write** (%s): %s\n\nThe log shows a gap marker where output was lost. Free space on the stack's disk (or its blob store) and re-run.",
			text(e.What), text(e.Cause))
	case *UnknownFailure:
		return generic(e.F)
	}
	return generic(f) // unreachable while the switch covers the set
}

func generic(f Failure) string {
	if f.Tag == "" {
		return "**The run failed.**\n\n" + text(f.Message)
	}
	return fmt.Sprintf("**The run failed** (%s): %s", code(f.Tag), text(f.Message))
}

func stderrBlock(tail string) string {
	tail = tailOf(tail, MaxStderrTail)
	if strings.TrimSpace(tail) == "" {
		return "\n\n_No output on stderr._"
	}
	return "\n\nLast lines of stderr:\n\n" + fence(tail)
}

// tailOf keeps the last limit bytes of s, cut at a rune boundary and, when possible,
// at a line start.
func tailOf(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[len(s)-limit:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "…\n" + s
}

// clip keeps the first limit bytes of s, cut at a rune boundary.
func clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for len(s) > 0 {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1] // part of a rune that was cut
	}
	return s + "…"
}

// fence puts s in a fenced block whose fence is longer than any backtick run in s.
func fence(s string) string {
	f := strings.Repeat("`", max(3, longestRun(s, '`')+1))
	return f + "\n" + strings.TrimRight(s, "\n") + "\n" + f
}

// code puts s in an inline code span that its own backticks cannot close.
func code(s string) string {
	s = strings.ReplaceAll(clip(s, 200), "\n", " ")
	if s == "" {
		return "` `"
	}
	f := strings.Repeat("`", longestRun(s, '`')+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return f + " " + s + " " + f
	}
	return f + s + f
}

// text makes a value safe to put in running markdown: one line, bounded, and with the
// characters that start markup, HTML or mentions neutralised.
func text(s string) string {
	s = clip(strings.Join(strings.Fields(s), " "), maxText)
	r := strings.NewReplacer("<", "&lt;", ">", "&gt;", "`", "'", "[", "\\[", "]", "\\]", "*", "\\*", "_", "\\_", "@", "@\u200b")
	return r.Replace(s)
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func seconds(s int64) string { return human(time.Duration(s) * time.Second) }

func millis(ms int64) string { return human(time.Duration(ms) * time.Millisecond) }

// human writes a duration the way a person would: 45 s, 10 min, 1h2m3s.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", d/time.Second)
	case d%time.Minute == 0 && d < 10*time.Hour:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}

func minutes(ms int64) int64 { return (ms + 30_000) / 60_000 }
