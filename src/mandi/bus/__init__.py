"""Message buses: the synchronous in-process bus (kernel) and the Redis bridge (shell)."""
