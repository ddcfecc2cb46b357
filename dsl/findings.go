package dsl

// Finding is one problem a run found at a place in the repository. A run whose output
// has a top-level "findings" list of these gets them on its check-run as annotations
// (the edge sends at most 50 per request and 500 in all; see specs/github.md).
type Finding struct {
	Path       string `json:"path"` // repository-relative, forward slashes
	StartLine  int    `json:"startLine"`
	EndLine    int    `json:"endLine,omitempty"` // 0 = StartLine
	Level      string `json:"level,omitempty"`   // notice | warning | failure; "" = warning
	Title      string `json:"title,omitempty"`
	Message    string `json:"message"`
	RawDetails string `json:"rawDetails,omitempty"`
}

// Finding levels, as GitHub names annotation levels.
const (
	LevelNotice  = "notice"
	LevelWarning = "warning"
	LevelFailure = "failure"
)
