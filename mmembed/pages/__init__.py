"""Pages drawn from text: corpora, random looks and the held-out evaluation sets.

Training (``train/``), evaluation, benchmarks and scripts all draw pages; this package holds
what they share, below all of them (it uses only ``processors``), so nothing imports ``train/``
to draw a page.
"""
