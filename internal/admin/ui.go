package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed ui
var uiFiles embed.FS

// uiHandler serves the dashboard: static files only. The page reads the
// JSON API, which is where the bearer token (if any) is checked.
func uiHandler() http.Handler {
	sub, _ := fs.Sub(uiFiles, "ui")
	return http.StripPrefix("/ui/", http.FileServerFS(sub))
}
