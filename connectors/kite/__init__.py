"""Zerodha Kite Connect v3: the order client, order updates, halts and reconciliation.

A thin client on ``httpx`` rather than the official ``kiteconnect`` SDK:
``kiteconnect`` 5.2.2 pulls in Twisted, autobahn 19.11 (an old pin),
pyOpenSSL, service_identity and requests for its WebSocket ticker, none of
which the order API needs (our ticker is ``connectors/marketdata/kite.py``).

Files: ``errors`` (typed errors and their classification rules),
``protocol`` (pure parsing of Kite's JSON shapes), ``client`` (HTTP),
``ratelimit`` (orders per second), ``store`` (Postgres: order intents and
instruments by token), ``placer`` (the live order placer the trading engine
calls), ``updates`` (Kite order states to ``orders.*`` events), ``postback``
(checksummed order postbacks over HTTP), ``halts`` (the kill switch's
Postgres and Redis flags), ``session`` (daily login), ``reconcile``.
"""
