"""Services on top of the Python API: talking to archives (``services.pacs``).

Nothing below ``services`` imports it; :mod:`DicomAnnotEmbedLib.api` re-exports the PACS calls
lazily (``api.pacs_send`` and friends import this package only when used).
"""
