"""Address broker events to their topics: the stage topic of each envelope type, keyed per DESIGN.md."""

from __future__ import annotations

import msgspec

from dataflows.tick_time import Stamped
from schemas.envelope import STAGE_TOPIC, AnyEnvelope, DlqEnvelope, Outbound
from schemas.headers import tick_created_headers
from schemas.topics import broker_topic, dlq_topic


def to_outbound(envelope: AnyEnvelope | Stamped) -> Outbound:
    """Address a broker event to its broker-namespaced topic, keyed per DESIGN.md.

    Every broker event is partitioned by its strategy, so each account's
    events keep their order across the per-stage flows. A :class:`Stamped`
    event gets its tick's create time in the ``ap-tick-created-ms`` header
    (dead letters never: ``dlq replay`` republishes only their payload).
    """
    if type(envelope) is Stamped:
        out = to_outbound(envelope.item)
        if isinstance(out.envelope, DlqEnvelope):
            return out
        return msgspec.structs.replace(out, headers=tick_created_headers(envelope.tick_created_ms))
    if isinstance(envelope, DlqEnvelope):
        topic = dlq_topic(envelope.data.dlq_metadata.original_topic)
    else:
        topic = broker_topic(envelope.broker, STAGE_TOPIC[type(envelope)])
    return Outbound(topic, envelope.key, envelope, envelope.key.split(":", 1)[0])
