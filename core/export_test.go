package core

// SetAcquireHook makes f run in every call just after it has taken a VM,
// before the engine gets it (nil: nothing). For the tests of the window
// between the two.
func SetAcquireHook(f func()) { acquireHook = f }
