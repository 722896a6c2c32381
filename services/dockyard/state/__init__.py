"""Named doors to Dockyard's state: one module per piece, a typed interface and its NATS
implementation.

A service is handed only the doors its `app.py` declares; the bus permissions it gets are
generated from the same declaration (`dockyard.bus.permissions`).
"""
