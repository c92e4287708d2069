package core_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"libbioxen/core"
)

// A long run of multibyte characters written at once reaches a listener
// and Read in pieces of bounded size, none splitting a character (65,536 is
// not a multiple of 3: the cut falls inside a "€").
func TestSessionLongWriteKeepsCharactersWhole(t *testing.T) {
	const code = `io.write(string.rep("\226\130\172", 100000)) io.stderr:write("e") io.write(string.rep("\226\130\172", 100000), "\n")`
	want := strings.Repeat("€", 200000) + "\n"
	check := func(t *testing.T, pieces []string) {
		t.Helper()
		if got := strings.Join(pieces, ""); got != want {
			t.Fatalf("got %d bytes, want %d", len(got), len(want))
		}
		for _, p := range pieces {
			if len(p) > core.MaxOutputPiece+utf8.UTFMax || !utf8.ValidString(p) {
				t.Fatalf("a piece of %d bytes, valid UTF-8: %v", len(p), utf8.ValidString(p))
			}
		}
	}
	for _, o := range engines(t) {
		for _, how := range []string{"execute", "input"} {
			t.Run(o.Engine+"/listener/"+how, func(t *testing.T) {
				_, s := openSession(t, o)
				var mu sync.Mutex
				var pieces []string
				s.SetListener(func(st core.Stream, p []byte) {
					if st == core.Stdout {
						mu.Lock()
						pieces = append(pieces, string(p))
						mu.Unlock()
					}
				})
				if how == "execute" {
					if _, err := s.Execute(context.Background(), []byte(code), core.ExecOptions{}); err != nil {
						t.Fatal(err)
					}
				} else {
					if err := s.Send([]byte(code)); err != nil {
						t.Fatal(err)
					}
					if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
						t.Fatalf("not idle: %v", err)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				check(t, pieces)
			})
		}
		t.Run(o.Engine+"/read", func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte(code)); err != nil {
				t.Fatal(err)
			}
			var pieces []string
			for s.Busy() || len(pieces) == 0 {
				out, err := s.Read(core.Stdout, 200*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) > 0 {
					pieces = append(pieces, string(out))
				}
			}
			if out, _ := s.Read(core.Stdout, 0); len(out) > 0 {
				pieces = append(pieces, string(out))
			}
			if got := strings.Join(pieces, ""); got != want {
				t.Fatalf("got %d bytes, want %d", len(got), len(want))
			}
			for _, p := range pieces {
				if !utf8.ValidString(p) {
					t.Fatal("a read split a character")
				}
			}
		})
	}
}
