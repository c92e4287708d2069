// Package sshsession runs commands and long-lived processes on a remote
// host (a VM) over one persistent SSH connection per host, with
// golang.org/x/crypto/ssh. The full guide is docs/ssh.md.
//
//	c, err := sshsession.Dial(ctx, sshsession.Config{
//		Host: "10.0.0.5", User: "root",
//		KeyFiles:       []string{"/home/me/.ssh/id_ed25519"},
//		KnownHostsFile: "/home/me/.ssh/known_hosts",
//	})
//	res, err := c.Run(ctx, "uname -a", nil, sshsession.Limits{Timeout: 10 * time.Second})
//	st, err := c.Start(ctx, "lua5.4 driver.lua") // Stdin, Stdout, Stderr, Wait, Signal, Close
//
// # Host keys
//
// Verified by default against an OpenSSH known_hosts file. Unknown hosts are
// refused unless Config.TrustOnFirstUse is set (the key is then appended to
// the file); a changed key is always refused with both fingerprints in the
// error. Config.InsecureIgnoreHostKey turns verification off, for
// throwaway test VMs only.
//
// # Liveness and reconnection
//
// Keepalives (keepalive@openssh.com) every Config.KeepaliveInterval; a
// missing reply marks the connection dead and closes it, which ends every
// channel on it. Run and Start reconnect lazily, with backoff, when they
// find the connection dead; Redial forces it. Streams never migrate.
//
// # Killing
//
// Run wraps its command with RemoteKillWrap when there is a deadline, so
// the remote process group dies by itself shortly after the deadline even
// when the connection is lost. On the deadline (and on Stream.Close) the
// remote process group is killed at once: an SSH "signal" request for KILL
// (OpenSSH delivers it with killpg to the session's process group, but
// refuses it for root logins and other servers may ignore it), plus
// `pkill --signal KILL -s <sid>` (every process of the SSH session, also in
// process groups made inside it, e.g. by a nested timeout(1); without
// procps: `kill -s KILL -- -<pgid>`) run on a second exec channel. The
// session leader's pid (its sid and pgid) is learned from a header: Run and
// Start prefix the command with
//
//	echo bioxen-pgid-<random token>:$$ >&2;
//
// which the login shell (a session leader: sshd calls setsid) runs first,
// and strip that line from stderr. Limits.NoKillWrap turns both the
// wrapper and the header off for Run.
//
// # Errors
//
// Every error is a *core.Error: ErrInvalid for bad configuration or
// commands, ErrTimeout for deadlines and cancellation, ErrClosed after
// Close, ErrEngine for connection, authentication and host-key failures,
// with ErrAuth, ErrHostKeyUnknown, ErrHostKeyChanged, ErrHostKeyRevoked or
// ErrConnLost in the chain (errors.Is). Passwords and key passphrases never
// appear in errors, logs or the formatted Config.
package sshsession
