package embedded

import (
	"context"
	"strings"
	"testing"

	"libbioxen/core"
	"libbioxen/internal/fsrace"
)

// TestFilesCheckThenOpenRace: a name in an allowed directory that another
// process swaps between a regular file and a symbolic link to a file
// outside. The guard resolves the name, then the file is opened: a link
// put in place between the two was followed, and the chunk read (or, with
// "w", truncated) the file outside. The open must not follow a link.
func TestFilesCheckThenOpenRace(t *testing.T) {
	allowed, name, _ := fsrace.Race(t, "f.txt", []byte("inside"), []byte("secret"))
	vm := openVM(t, core.Options{AllowedPaths: []string{allowed}})
	code := strings.ReplaceAll(`
		local opened = 0
		for i = 1, 200000 do
			local f = io.open(NAME)
			if f then
				opened = opened + 1
				local s = f:read("*a")
				f:close()
				if s == "secret" then return "read outside", i end
			end
			if opened >= 20000 then break end
		end
		return "ok", opened`, "NAME", luaQuote(name))
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(res.Values), `["ok",`) {
		t.Errorf("%s %s", res.Values, res.ErrorMessage)
	}
}
