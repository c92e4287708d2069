package core

import (
	"io"
	"os"
	"syscall"
)

// ReadRegularFile reads the file at path, which must be a regular file of
// at most max bytes: a FIFO, a device (/dev/zero) or a huge file is a
// typed error (ErrInvalid) at once, instead of a read that
// never ends or fills the memory. A missing or unreadable file is
// ErrFileNotFound. op names the operation in the errors.
func ReadRegularFile(op, path string, max int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO does not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read "+path, unwrapPathError(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read "+path, unwrapPathError(err))
	}
	if !st.Mode().IsRegular() {
		return nil, Errorf(ErrInvalid, op, "%s is not a regular file (%v)", path, st.Mode().Type())
	}
	tooLarge := func(n int64) error {
		return Errorf(ErrInvalid, op, "%s is larger than %d bytes (%d)", path, max, n)
	}
	if st.Size() > max {
		return nil, tooLarge(st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read "+path, unwrapPathError(err))
	}
	if int64(len(data)) > max { // it grew while we read
		return nil, tooLarge(int64(len(data)))
	}
	return data, nil
}
