"""The package index of sessions: pip without internet, for allowed names only."""
