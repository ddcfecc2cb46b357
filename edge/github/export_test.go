package github

// TruncateSummary is truncate, for the tests.
var TruncateSummary = truncate
