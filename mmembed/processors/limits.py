"""Input limits the library enforces, in a module without heavy imports (the server's
configuration reads them before any model or pandas loads)."""

MAX_CELLS = 100_000  # largest table (rows x columns) accepted; bigger ones are refused
MAX_PDF_PAGES = 5_000  # pages indexed per PDF; a longer one is skipped with the reason
MAX_PAGE_PIXELS = 40_000_000  # a rendered PDF page over this many pixels is skipped
