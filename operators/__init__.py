"""Pure, engine-free trading logic: strategies, risk rules, fills, portfolio.

Every stateful operator here is split into a frozen ``*Config``, a plain
mutable ``*State`` whose ``copy()`` shares nothing with the live state, and a
logic object with small step methods. Nothing here performs I/O, reads the
wall clock or uses the global random generator; the Bytewax glue in
``dataflows/`` builds these objects and feeds them events.
"""
