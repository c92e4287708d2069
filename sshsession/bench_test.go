package sshsession

import (
	"bufio"
	"context"
	"fmt"
	"testing"
	"time"

	"libbioxen/sshsession/sshtest"
)

// BenchmarkSSH compares, against a real sshd on 127.0.0.1 as the user
// bioxen-test (login shell /bin/sh, no rc files, so the numbers are the SSH
// costs rather than a shell's start-up):
//
//	persistent: Run("true") on an established connection (a new exec channel)
//	dial-per-command: Dial + Run("true") + Close
//	stream-echo: one line written to a remote `cat` and read back
//
// and logs dial-per-command / persistent and persistent / stream-echo.
func BenchmarkSSH(b *testing.B) {
	s := sshtestStart(b)
	user, _ := sshtest.PasswordLogin(b)
	cfg := keyConfig(b, s)
	cfg.User = user
	ctx := context.Background()
	var persistent, perDial, echo float64
	nsPerOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }

	b.Run("persistent", func(b *testing.B) {
		c := dial(b, cfg)
		b.ResetTimer()
		for b.Loop() {
			if _, err := c.Run(ctx, "true", nil, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
		persistent = nsPerOp(b)
	})
	b.Run("dial-per-command", func(b *testing.B) {
		for b.Loop() {
			c, err := Dial(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Run(ctx, "true", nil, Limits{}); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
		perDial = nsPerOp(b)
	})
	b.Run("stream-echo", func(b *testing.B) {
		c := dial(b, cfg)
		st, err := c.Start(ctx, "cat")
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		r := bufio.NewReader(st.Stdout)
		line := []byte("a line of about sixty bytes for the echo round trip......\n")
		for b.Loop() {
			if _, err := st.Stdin.Write(line); err != nil {
				b.Fatal(err)
			}
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
		echo = nsPerOp(b)
	})
	if persistent > 0 && perDial > 0 && echo > 0 {
		fmt.Printf("BenchmarkSSH: persistent Run %v, dial-per-command %v (%.1fx), stream echo %v (Run/echo %.0fx)",
			time.Duration(persistent).Round(time.Microsecond), time.Duration(perDial).Round(time.Microsecond),
			perDial/persistent, time.Duration(echo).Round(time.Microsecond), persistent/echo)
		fmt.Println()
	}
}
