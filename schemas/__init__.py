"""The public contract of Alpha Panda as code: events, envelope, codec, topics.

Nothing here performs I/O. Every other package depends on this one; this one
depends on nothing but msgspec.
"""
