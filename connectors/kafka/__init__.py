"""Kafka I/O: client settings, topic admin, the bytewax sources and sink, offset checks.

Works against any Kafka-API broker (Redpanda, Apache Kafka, Tansu). All
consumers here use manual partition assignment, never consumer groups:
offsets are bytewax's recovery state, and group joins are slow on Tansu.

Tansu (the local broker) quirks seen with librdkafka 2.x, all handled here:

- its high watermark is the base offset of the *last record batch* + 1, not
  the last offset + 1, so watermarks understate the log end and cannot be used
  for lag or for "read until offset N"; end-of-partition events are still
  correct because a consumer only passes the watermark after the last batch.
- producing to an unknown topic creates it (with the broker's default
  partition count), so :func:`connectors.kafka.admin.create_topics` must run before producers start.
- topic configs (``retention.ms``) are accepted on create but not reported
  back by ``describe_configs``.
- idempotent producers and lz4/zstd/snappy/gzip compression all work.

Modules: ``config`` (client settings, security), ``admin`` (topic creation
and listing), ``delivery`` (queueing and delivery reports), ``sink`` (the
Outbound sink), ``source`` (the bytewax sources, per message or per poll),
``offsets`` (log end and lost-position checks), ``records`` (produce a list,
read a topic back), ``tail`` (follow the newest messages, for the dashboard).
"""
