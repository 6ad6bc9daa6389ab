package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed ui
var uiFiles embed.FS

// uiCSP is the dashboard's Content-Security-Policy: its own scripts, styles
// and API only (no inline script or style, no other origin), never framed.
const uiCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiHandler serves the dashboard: static files only. The page reads the
// JSON API, which is where the bearer token (if any) is checked.
func uiHandler() http.Handler {
	sub, _ := fs.Sub(uiFiles, "ui")
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", uiCSP)
		files.ServeHTTP(w, r)
	})
}
