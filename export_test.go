package bondkv

// SetCrashAfterPrepare makes db's transaction coordinators stop right after their prepares
// whenever f returns true, as if the process died there: no commit, no clean-up.
func SetCrashAfterPrepare(db *DB, f func() bool) {
	if f == nil {
		db.txn.crashAfterPrepare.Store(nil)
		return
	}
	db.txn.crashAfterPrepare.Store(&f)
}
