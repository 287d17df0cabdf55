"""Policy between protocols and archives: MAXREC limits, planning, permissions, hooks."""
