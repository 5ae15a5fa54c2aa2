"""QR top-ups: the payment provider interface and its O!Dengi-style adapter, crediting, and the billing jobs.

- ``provider``: what csms needs from a payment provider (:class:`~.provider.PaymentProvider`), the data
  it returns, and the one exception hierarchy of this boundary.
- ``odengi``: the adapter for an O!Dengi-style HTTP JSON API (signed requests, signed webhooks).
- ``signing``: HMAC-SHA256 signatures, always compared in constant time.
- ``crediting``: the one place where a provider's word becomes money in a wallet.
- ``topups``: creating a top-up invoice (``topUp``).
- ``webhook``: checking and applying a provider's notification.
- ``jobs``: invoice expiry and reconciliation, run in the supervisor's nursery.
- ``refunds``: operators' refunds of top-ups, through the ledger with an audit record.
"""
