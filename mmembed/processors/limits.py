"""Input limits the library enforces, in a module without heavy imports (the server's
configuration reads them before any model or pandas loads)."""

MAX_CELLS = 100_000  # largest table (rows x columns) accepted; bigger ones are refused
