"""An index in a distributed vector engine (Milvus; Milvus Lite embedded), behind a URI.

``uri.py`` reads the URI, ``milvus.py`` talks to the engine, ``ledger.py`` keeps what was
stored with checksums, ``update.py`` uploads and reconciles, ``index.py`` searches.
"""
