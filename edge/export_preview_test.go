package edge

// PreviewURL exposes previewURL to the external tests.
var PreviewURL = previewURL
