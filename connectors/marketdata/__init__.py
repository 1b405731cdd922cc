"""Market data in: Zerodha KiteTicker, Alpaca, Yahoo, instruments, bar history.

Pure parsers (``kite_protocol``, the ``parse_*`` functions, ``bars``) are kept
apart from the clients that do network and database I/O, so the parsing is
tested byte for byte without a server.
"""
