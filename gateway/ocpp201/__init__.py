"""OCPP 2.0.1 beside 1.6 on the same gateway (docs/gateway.md, "OCPP 2.0.1").

- :mod:`gateway.ocpp201.frames`: our own frame check with the 2.0.1 CallError codes (Part 4
  Table 8), decided before the ``ocpp`` library routes a message.
- :mod:`gateway.ocpp201.charge_point`: the handlers of a 2.0.1 connection.
- :mod:`gateway.ocpp201.transactions`: TransactionEvent onto our transaction journal, the same
  outbox rows (and so the same session workflow signals) as 1.6.
- :mod:`gateway.ocpp201.commands`: 1.6-named commands translated for a 2.0.1 connection.
"""
