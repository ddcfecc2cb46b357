package edge

// PreviewURL exposes previewURL to the external tests.
var PreviewURL = previewURL

// ParsePreviewHost exposes parsePreviewHost to the external tests.
var ParsePreviewHost = parsePreviewHost
