"""Check: anomaly mode (``anomaly``) and gradient checks against finite differences
(``gradcheck``). Kept import-free so that ``function`` can use ``anomaly`` while ``gradcheck``
builds functions."""
